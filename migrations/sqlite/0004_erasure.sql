-- Erasure (GDPR art. 17) that keeps the suppression: `consent erase` deletes an address
-- from the current state, the history and the token subjects, and records an opt-out for
-- its keyed pseudonym instead (see src/consent/erasure.rs). The history stays append-only
-- for everything else: a row may be deleted only while its address is listed here, which
-- the erasing transaction does, and undoes, itself.

CREATE TABLE erasing (
    address TEXT PRIMARY KEY
);

DROP TRIGGER consent_history_no_delete;

CREATE TRIGGER consent_history_no_delete BEFORE DELETE ON consent_history
WHEN NOT EXISTS (SELECT 1 FROM erasing WHERE address = OLD.address)
BEGIN
    SELECT RAISE(ABORT, 'consent_history is append-only');
END;
