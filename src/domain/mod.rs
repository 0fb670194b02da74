//! What a qualified bounce means for an address and a delivery, without
//! SQL: the address state machine ([`state`]), correlation to what was sent
//! and signed VERP tokens ([`correlation`]), the retry schedule
//! ([`retry`]), and the texts kept and queued ([`normalise`]).
//!
//! The store reads and locks rows, calls these functions on them and writes
//! the result back; nothing here knows about the database, so every rule is
//! unit-testable with plain values.

pub mod correlation;
pub mod normalise;
pub mod retry;
pub mod state;

pub use correlation::{normalise_message_id, verify_verp_token, verp_token, CorrelatedBy};
pub use normalise::{category_for_reason, normalise_diagnostic, pattern_from_normalised};
pub use state::{AddressStatus, NotCounted};
