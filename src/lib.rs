//! inmail: a bounce-processing daemon.
pub mod analysis;
pub mod cli;
pub mod config;
pub mod model;
pub mod rules;
pub mod source;
pub mod store;
