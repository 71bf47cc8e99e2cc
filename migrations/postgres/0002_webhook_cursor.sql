-- How far each webhook's delivery has got in the change feed (`consent_history`).
--
-- The history is the outbox: every change writes its history row in the transaction
-- that makes it, so an event can never be lost between the change and its delivery.
-- A webhook's position here moves only after the events before it were accepted by the
-- receiver (or given up after the configured time), so a crash re-delivers at most the
-- page in flight, under the same idempotency keys. Shared by the nodes: whichever node
-- delivers (one at a time, under an advisory lock) carries on from here.

CREATE TABLE webhook_cursor (
    name        TEXT COLLATE "C" PRIMARY KEY,
    feed_commit BIGINT NOT NULL,
    feed_row    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
