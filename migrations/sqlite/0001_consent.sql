-- The consent store, SQLite flavour.
--
-- `consent` holds the current value per (address, channel, scope); `consent_history` is
-- the audit trail, one row per change, and may only grow. Both are written in the same
-- transaction, so the trail never misses a change and never shows one that did not happen.
-- Times are Unix milliseconds (UTC).

CREATE TABLE consent (
    address    TEXT    NOT NULL,  -- normalized: IDNA domain, folded local part
    channel    TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
    scope      TEXT    NOT NULL,  -- a list id, or '*' for all marketing
    value      TEXT    NOT NULL CHECK (value IN ('y','n','p','u','dy','dn','LI','CT','CP','VI','PI')),
    source     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    evidence   TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (address, channel, scope)
) WITHOUT ROWID;

CREATE TABLE consent_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    address     TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    evidence    TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX consent_history_address ON consent_history (address, id);

-- The trail is evidence: refuse to rewrite or delete it.
CREATE TRIGGER consent_history_no_update BEFORE UPDATE ON consent_history
BEGIN
    SELECT RAISE(ABORT, 'consent_history is append-only');
END;

CREATE TRIGGER consent_history_no_delete BEFORE DELETE ON consent_history
BEGIN
    SELECT RAISE(ABORT, 'consent_history is append-only');
END;
