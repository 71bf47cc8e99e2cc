-- Inbound messages already applied, by their sender's message id (an SMS provider's
-- `MessageSid` or `message_uuid`, prefixed with the provider): providers send a message
-- again until they get a 200, and a retry must record nothing twice, even after a later
-- message changed the value back (STOP, START, then STOP's retry). The id is written in
-- the transaction of the change it caused, so a change and its id commit together.
-- Ids name no person; they stay when an address is erased.

CREATE TABLE applied_message (
    id         TEXT    PRIMARY KEY,
    applied_at INTEGER NOT NULL      -- Unix milliseconds
);
