-- inmail store schema: everything a qualified bounce changes.
-- Enumerations are text with CHECK constraints rather than PG enums so that
-- adding a value is a plain constraint swap in a later migration.

-- Rules of the qualification engine. Hit counts live here so that an operator
-- sees which rules are dead; changes to the rule definition NOTIFY listeners.
CREATE TABLE qualification_rules (
    id           text PRIMARY KEY CHECK (id <> ''),
    pattern      text NOT NULL CHECK (pattern <> ''),
    bounce_type  text NOT NULL CHECK (bounce_type IN ('hard', 'soft', 'ignored', 'none')),
    reason       text NOT NULL CHECK (reason IN ('user_unknown', 'mailbox_full', 'invalid_domain',
                     'account_disabled', 'refused', 'unreachable', 'not_defined')),
    category     text NOT NULL CHECK (category ~ '^[a-z_]+$'),
    priority     integer NOT NULL DEFAULT 100,
    domain       text CHECK (domain IS NULL OR domain = lower(domain)),
    enabled      boolean NOT NULL DEFAULT true,
    origin       text NOT NULL DEFAULT 'import' CHECK (origin IN ('import', 'manual', 'qualification')),
    hit_count    bigint NOT NULL DEFAULT 0,
    last_hit_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qualification_rules_enabled_idx ON qualification_rules (priority, id) WHERE enabled;

CREATE FUNCTION inmail_notify_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inmail_rules', TG_OP);
    RETURN NULL;
END $$;

CREATE TRIGGER qualification_rules_notify_ins_del
    AFTER INSERT OR DELETE ON qualification_rules
    FOR EACH STATEMENT EXECUTE FUNCTION inmail_notify_rules();
-- Hit-count updates happen on every batch: they must not make every daemon reload.
CREATE TRIGGER qualification_rules_notify_upd
    AFTER UPDATE ON qualification_rules
    FOR EACH ROW
    WHEN ((OLD.pattern, OLD.bounce_type, OLD.reason, OLD.category, OLD.priority, OLD.domain, OLD.enabled)
          IS DISTINCT FROM
          (NEW.pattern, NEW.bounce_type, NEW.reason, NEW.category, NEW.priority, NEW.domain, NEW.enabled))
    EXECUTE FUNCTION inmail_notify_rules();
CREATE TRIGGER qualification_rules_notify_truncate
    AFTER TRUNCATE ON qualification_rules
    FOR EACH STATEMENT EXECUTE FUNCTION inmail_notify_rules();

-- A sending (campaign, transactional stream...). The override columns replace
-- the [retry] settings for this sending when set.
CREATE TABLE deliveries (
    id                     bigserial PRIMARY KEY,
    name                   text NOT NULL UNIQUE,
    created_at             timestamptz NOT NULL DEFAULT now(),
    validity               interval,
    quick_retries          integer CHECK (quick_retries >= 0),
    quick_interval         interval,
    daily_retries          integer CHECK (daily_retries >= 0)
);

-- One row per recipient per sending.
CREATE TABLE delivery_logs (
    id               bigserial PRIMARY KEY,
    delivery_id      bigint REFERENCES deliveries (id) ON DELETE SET NULL,
    address          text NOT NULL CHECK (address = lower(address)),
    message_id       text,
    tracking_id      text,
    profile_id       text,
    sent_at          timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'failed')),
    failure_type     text CHECK (failure_type IN ('hard', 'soft', 'ignored', 'none')),
    failure_reason   text,
    failure_category text,
    error_text       text,
    -- sync: refused during the SMTP dialogue (written by the sender); async: a bounce.
    failure_mode     text CHECK (failure_mode IN ('sync', 'async')),
    bounced_at       timestamptz,
    retry_count      integer NOT NULL DEFAULT 0,
    next_retry_at    timestamptz
);
CREATE INDEX delivery_logs_tracking_idx ON delivery_logs (tracking_id, address) WHERE tracking_id IS NOT NULL;
CREATE INDEX delivery_logs_message_idx ON delivery_logs (message_id, address) WHERE message_id IS NOT NULL;
CREATE INDEX delivery_logs_address_idx ON delivery_logs (address, sent_at DESC);
CREATE INDEX delivery_logs_retry_idx ON delivery_logs (next_retry_at) WHERE next_retry_at IS NOT NULL;

-- One row per normalised (lowercased) address that something happened to.
CREATE TABLE addresses (
    address                    text PRIMARY KEY CHECK (address = lower(address)),
    domain                     text NOT NULL,
    status                     text NOT NULL DEFAULT 'valid'
                                   CHECK (status IN ('valid', 'erroneous', 'quarantined', 'denylisted', 'allowlisted')),
    error_count                integer NOT NULL DEFAULT 0 CHECK (error_count >= 0),
    first_error_at             timestamptz,
    last_error_at              timestamptz,
    last_significant_error_at  timestamptz,
    last_type                  text,
    last_reason                text,
    last_category              text,
    last_text                  text,
    quarantined_at             timestamptz,
    release_at                 timestamptz,
    updated_at                 timestamptz NOT NULL
);
CREATE INDEX addresses_status_idx ON addresses (status);
CREATE INDEX addresses_release_idx ON addresses (release_at) WHERE release_at IS NOT NULL;
CREATE INDEX addresses_counting_idx ON addresses (last_significant_error_at) WHERE error_count > 0;

-- Append-only: one row per recipient per bounce, plus one per manual or
-- scheduled state change (kind <> 'bounce'). The audit trail of an address.
CREATE TABLE bounce_events (
    id               bigserial PRIMARY KEY,
    occurred_at      timestamptz NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('bounce', 'release', 'reset', 'manual')),
    message_hash     bytea,
    source           text,
    address          text NOT NULL,
    domain           text NOT NULL,
    delivery_log_id  bigint,
    correlation      text NOT NULL CHECK (correlation IN ('tracking_id', 'message_id', 'verp', 'none')),
    bounce_type      text,
    reason           text,
    category         text,
    enhanced_status  text,
    reply_code       smallint,
    diagnostic       text,
    rule_id          text,
    counted          boolean NOT NULL DEFAULT false,
    not_counted_why  text,
    status_before    text NOT NULL,
    status_after     text NOT NULL,
    count_before     integer NOT NULL,
    count_after      integer NOT NULL
);
CREATE INDEX bounce_events_address_idx ON bounce_events (address, occurred_at DESC);
CREATE INDEX bounce_events_time_idx ON bounce_events (occurred_at);
CREATE INDEX bounce_events_hash_idx ON bounce_events (message_hash) WHERE message_hash IS NOT NULL;

-- Idempotence: a message whose hash is here has had all its effects.
CREATE TABLE processed_messages (
    message_hash  bytea PRIMARY KEY CHECK (length(message_hash) = 32),
    processed_at  timestamptz NOT NULL,
    source        text,
    recipients    integer NOT NULL
);
CREATE INDEX processed_messages_time_idx ON processed_messages (processed_at);

-- Failures caused by the sending side, counted per recipient domain and day
-- ("outlook.com is blocking us") instead of against the address.
CREATE TABLE domain_sender_failures (
    domain      text NOT NULL,
    day         date NOT NULL,
    category    text NOT NULL,
    count       bigint NOT NULL,
    last_at     timestamptz NOT NULL,
    last_text   text,
    PRIMARY KEY (domain, day, category)
);
CREATE INDEX domain_sender_failures_day_idx ON domain_sender_failures (day);

-- The "to qualify" queue: one row per shape of unexplained bounce text.
-- 'matched' means a rule added later explains it (set by requalify).
CREATE TABLE message_qualifications (
    id             bigserial PRIMARY KEY,
    text_hash      bytea NOT NULL UNIQUE,
    normalised     text NOT NULL,
    first_text     text NOT NULL,
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    count          bigint NOT NULL,
    status         text NOT NULL DEFAULT 'to_qualify' CHECK (status IN ('to_qualify', 'keep', 'ignore', 'matched')),
    bounce_type    text,
    reason         text,
    category       text,
    rule_id        text
);
CREATE INDEX message_qualifications_status_idx ON message_qualifications (status, count DESC);
