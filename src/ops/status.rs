//! Setting an address's status by hand (quarantine, denylist, allowlist, valid), audited.
