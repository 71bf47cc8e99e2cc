-- Erasure (GDPR art. 17) that keeps the suppression: `consent erase` deletes an address
-- from the current state, the history and the token subjects, and records an opt-out for
-- its keyed pseudonym instead (see src/consent/erasure.rs). The history stays append-only
-- for everything else: a row may be deleted only while its address is listed in
-- `erasing`, which only `optout_erase` does, and undoes, in the erasing transaction.
--
-- The nodes' role (deploy/postgresql/roles.sql) may not delete anything; it erases
-- through `optout_erase`, which runs with its owner's rights and deletes one address.

CREATE TABLE erasing (
    address TEXT COLLATE "C" PRIMARY KEY
);

CREATE OR REPLACE FUNCTION consent_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM erasing WHERE address = OLD.address) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_history is append-only';
END;
$$;

-- Deletes every row that names `target`; returns how many history rows went.
CREATE FUNCTION optout_erase(target TEXT) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    removed BIGINT;
BEGIN
    INSERT INTO erasing (address) VALUES (target) ON CONFLICT DO NOTHING;
    DELETE FROM consent_history WHERE address = target;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM consent WHERE address = target;
    DELETE FROM token_subject WHERE address = target;
    DELETE FROM erasing WHERE address = target;
    RETURN removed;
END;
$$;
