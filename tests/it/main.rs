//! End-to-end tests: the real toolwarden binary with real children.

mod approvals;
mod audit;
mod common;
mod docs;
mod everything;
mod faults;
mod first_run;
mod full_format;
mod hostile;
mod init;
mod lifecycle;
mod memory;
mod pin;
mod policies;
mod python_sdk;
mod reload;
mod remote;
mod report;
mod round_trip;
mod seeds;
mod state;
mod stdio_kinds;
mod telemetry;
mod wrap;
