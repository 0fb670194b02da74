-- The send path talks to inmail directly: deliveries registered through the
-- API (idempotent on message id and address), synchronous failures (refused
-- during the SMTP dialogue, idempotent on the sender's id) and audited manual
-- status changes naming who made them.

-- Existing duplicates of (message_id, address) — the same CSV imported twice —
-- are merged before the unique index is built: per pair the most informative
-- row is kept (a failed one first, then the latest sent, then the newest),
-- the audit trail is pointed at it and the others are deleted. They carry
-- nothing the kept row lacks: correlation always picked the latest one.
WITH ranked AS (
    SELECT id,
           first_value(id) OVER w AS keep,
           row_number() OVER w AS n
      FROM delivery_logs
     WHERE message_id IS NOT NULL
    WINDOW w AS (PARTITION BY message_id, address
                 ORDER BY (status = 'failed') DESC, sent_at DESC, id DESC)
), moved AS (
    UPDATE bounce_events e SET delivery_log_id = r.keep
      FROM ranked r
     WHERE r.n > 1 AND e.delivery_log_id = r.id
)
DELETE FROM delivery_logs l USING ranked r WHERE r.n > 1 AND l.id = r.id;

-- NULL message ids (a CSV row without one) stay allowed, any number of them.
CREATE UNIQUE INDEX delivery_logs_message_address_key ON delivery_logs (message_id, address);
DROP INDEX delivery_logs_message_idx;

-- A later delivery of the same sending to the same address ends the earlier
-- log's retry schedule: found through the logs still scheduled.
CREATE INDEX delivery_logs_scheduled_idx ON delivery_logs (address, delivery_id)
    WHERE next_retry_at IS NOT NULL;

-- Idempotence of synchronous failures: the sender's id → the result returned
-- the first time. `result` is written in the transaction that claimed the id.
CREATE TABLE sync_failures (
    id          text PRIMARY KEY CHECK (id <> ''),
    result      jsonb,
    created_at  timestamptz NOT NULL
);
CREATE INDEX sync_failures_time_idx ON sync_failures (created_at);

-- Who changed an address by hand (the API token's name, `cli:$USER`) and why.
ALTER TABLE bounce_events ADD COLUMN actor text, ADD COLUMN note text;

-- A retry is a new delivery log; it carries on its predecessor's schedule:
-- the retries already done (`retry_count`, copied) and when the first attempt
-- was sent (the delivery's validity runs from there). NULL: this log is the
-- first attempt.
ALTER TABLE delivery_logs ADD COLUMN first_sent_at timestamptz;
