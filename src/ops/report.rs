//! The bounce report.
