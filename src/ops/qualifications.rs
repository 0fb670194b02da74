//! The "to qualify" queue: list, keep, ignore.
