//! Address lookup and the send-time check.
