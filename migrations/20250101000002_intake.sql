-- Durable intake: every fetched message is stored raw here before it is
-- removed from its mailbox; workers claim queued rows (FOR UPDATE SKIP
-- LOCKED), apply them and mark them done in the same transaction.
CREATE TABLE intake (
    id               bigserial PRIMARY KEY,
    mailbox          text NOT NULL CHECK (mailbox <> ''),
    -- The message's identity in its mailbox: maildir unique name, IMAP
    -- "uidvalidity:uid", POP3 UIDL.
    uid              text NOT NULL CHECK (uid <> ''),
    -- SHA-256 of raw: the same message fetched twice (from two mailboxes,
    -- or re-delivered) is stored once.
    content_hash     bytea NOT NULL CHECK (length(content_hash) = 32),
    raw              bytea NOT NULL,
    received_at      timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    processed_at     timestamptz,
    UNIQUE (mailbox, uid)
);
CREATE UNIQUE INDEX intake_content_hash_idx ON intake (content_hash);
-- The workers' queue: only queued rows, in due order.
CREATE INDEX intake_queue_idx ON intake (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX intake_failed_idx ON intake (id) WHERE status = 'failed';
CREATE INDEX intake_purge_idx ON intake (processed_at) WHERE status = 'done';

-- Where an incremental source (IMAP) stands in its mailbox.
CREATE TABLE mailbox_checkpoints (
    mailbox       text PRIMARY KEY,
    uid_validity  bigint NOT NULL,
    last_uid      bigint NOT NULL,
    updated_at    timestamptz NOT NULL
);
