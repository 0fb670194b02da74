-- A mailbox's uid (maildir file name, POP3 UIDL, IMAP validity:uid) is a
-- hint, not an identity: servers reuse UIDLs, a maildir name comes back
-- after `after = "delete"`, and a broken server lists one UIDL twice. Only
-- the content hash says "already stored"; a reused uid with new content is
-- a new message.
ALTER TABLE intake DROP CONSTRAINT intake_mailbox_uid_key;
CREATE INDEX intake_mailbox_uid_idx ON intake (mailbox, uid);

-- Set when `raw` holds only the first `daemon.max_message_bytes` of a
-- larger message: its full size in bytes (`content_hash` is still the
-- SHA-256 of the whole message). NULL when `raw` is the whole message.
ALTER TABLE intake ADD COLUMN original_size bigint
    CHECK (original_size IS NULL OR original_size > 0);
