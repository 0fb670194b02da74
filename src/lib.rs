//! inmail: a bounce-processing daemon.
pub mod analysis;
pub mod cli;
pub mod config;
pub mod model;
pub mod pipeline;
pub mod rules;
pub mod source;
pub mod startup;
pub mod store;
pub mod telemetry;
