-- An undo puts a key back as it was, and a key that had no record before must have none
-- again (an undo that recorded `y` would invent a consent the person never gave). The
-- nodes' role may not delete from `consent` (deploy/postgresql/roles.sql); it removes one
-- record through `optout_empty`, which runs with its owner's rights, and which writes the
-- removal to the history with an empty value, so the trail and the change feed show it.

CREATE FUNCTION optout_empty(
    target_address TEXT, target_channel TEXT, target_scope TEXT,
    by_source TEXT, at BIGINT, why TEXT
) RETURNS BOOLEAN
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    DELETE FROM consent
    WHERE address = target_address AND channel = target_channel AND scope = target_scope;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    INSERT INTO consent_history (address, channel, scope, value, source, recorded_at, evidence)
    VALUES (target_address, target_channel, target_scope, '', by_source, at, why);
    RETURN TRUE;
END;
$$;
