//! inmail: a bounce-processing daemon.
//!
//! Data flows one way, and each stage is one module:
//!
//! ```text
//! source ──► store (intake) ──► pipeline ──► analysis ──► rules ──► store (apply)
//! ```
//!
//! - [`source`]: where bounces come from — one file per kind implementing
//!   [`source::Fetch`]: a maildir ([`source::maildir`]), an IMAP or POP3
//!   account ([`source::remote`], over [`source::imap`] / [`source::pop3`] /
//!   [`source::tls`]). A source stores each raw message in the intake table
//!   and acknowledges it (move, delete, checkpoint) only after that commit.
//! - [`pipeline`]: the step from a raw message to its verdicts
//!   ([`pipeline::process`], also what `ingest` and `qualify` run), and the
//!   workers. They claim stored messages, process them, and apply the
//!   results and mark the messages done in one transaction.
//! - [`analysis`]: one raw message → an [`analysis::Analysis`] (kind, failed
//!   recipients, codes, diagnostic, what ties it to the sent message). The
//!   only user of mailparse; bounded and panic-free on any input.
//! - [`rules`]: one recipient → a [`rules::Verdict`] (type, reason, category)
//!   from the structure, the regex rules, then the status and reply codes.
//! - [`store`]: PostgreSQL, the only module with SQL — intake, rules,
//!   deliveries, address states, the audit trail, the "to qualify" queue.
//! - [`domain`]: what a qualified bounce means, without SQL — the address
//!   state machine, correlation and signed VERP tokens, the retry schedule,
//!   the shape of a queued text. The store calls it on the rows it read.
//! - [`ops`]: the operations both front ends ([`cli`], [`http`]) call —
//!   addresses, quarantine, rules, qualifications, report, deliveries,
//!   ingest, cleanup.
//! - [`model`]: the typed values all of them share (`EmailAddress`,
//!   `EnhancedStatus`, `BounceType`, `Reason`, `Category`, ...).
//! - [`app`]: builds the daemon from [`config::Settings`] (`App::build`)
//!   and runs it (`run_until_stopped`, `run_once`): one supervision loop
//!   for every mailbox, the workers, cleanup and the rules listener;
//!   [`telemetry`] sets up the logs; [`cli`] is the command line, with
//!   `main.rs` a thin wrapper around it. [`clock`] and [`backoff`] are the
//!   small pieces every loop shares.
pub mod analysis;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod rules;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod text;
