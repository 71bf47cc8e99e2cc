-- Subject ids for unsubscribe tokens.
--
-- A token cannot carry an address (it must fit a 64-octet mailto local part and must not
-- reveal whom it is for), so it carries this table's id for the (address, scope) pair
-- instead. Rows are created when the first token for a pair is minted and never change,
-- so a token stays resolvable for as long as the row exists.

CREATE TABLE token_subject (
    id         INTEGER PRIMARY KEY,  -- the subject id inside tokens
    address    TEXT    NOT NULL,     -- normalized, as in consent
    scope      TEXT    NOT NULL,     -- a list id, or '*'
    created_at INTEGER NOT NULL,     -- Unix milliseconds
    UNIQUE (address, scope)
);
