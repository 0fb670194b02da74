//! inmail: a bounce-processing daemon.
pub mod analysis;
pub mod model;
pub mod rules;
pub mod source;
