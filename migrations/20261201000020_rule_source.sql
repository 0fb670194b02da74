-- What says a rule's text means what the rule says: the RFC section, the
-- MTA's source file or documentation, or the provider's published error-code
-- page. Bundled rules all carry one (re-import config/rules.toml to fill it);
-- a rule added by hand or kept from the queue may have none.
ALTER TABLE qualification_rules ADD COLUMN source text CHECK (source IS NULL OR source <> '');
