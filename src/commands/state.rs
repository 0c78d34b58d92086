//! `toolwarden state show|reset`: the counters in a state store, shown or
//! emptied, without a session.

use crate::cli::StateCommand;
use crate::plural::count;
use crate::state::{self, Reset, Spec, State};

/// Runs one command: what to print, and the exit code (0; 2 for a store
/// that does not open; 1 for one that cannot be read or a counter it does
/// not hold).
pub fn run(command: &StateCommand) -> (String, u8) {
    let store = match command {
        StateCommand::Show(store) | StateCommand::Reset { store, .. } => store,
    };
    let spec = match state::spec(store.state.as_deref()) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return (String::new(), 2);
        }
    };
    // Looking creates nothing: a store that is not there holds no
    // counters. (A new LMDB map reads those of `state.db` beside it: made
    // here as a session would make it, so that they are shown.)
    if let Some(path) = spec.file() {
        let old_counters =
            matches!(spec, Spec::Lmdb(_)) && path.with_file_name("state.db").exists();
        if !path.exists() && !old_counters {
            let none = format!("no counters yet: {} does not exist", path.display());
            return match command {
                StateCommand::Show(_) => (format!("{none}\n"), 0),
                StateCommand::Reset { counter, .. } => {
                    eprintln!("toolwarden: no counter {counter} to reset: {none}");
                    (String::new(), 1)
                }
            };
        }
    }
    let state = match State::open(spec, String::new(), String::new()) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return (String::new(), 2);
        }
    };
    let report = match command {
        StateCommand::Show(_) => state.show(),
        StateCommand::Reset {
            counter, identity, ..
        } => match state.reset(counter, identity.as_deref()) {
            Ok(Reset::Emptied(n)) => Ok(format!(
                "{}: {} of {counter} emptied\n",
                state.spec(),
                count(n, "bucket")
            )),
            Ok(Reset::NoSuchCounter { known }) => {
                let there = if known.is_empty() {
                    "it holds none".to_owned()
                } else {
                    format!("it holds {}", known.join(", "))
                };
                eprintln!(
                    "toolwarden: {}: no counter {counter} (a counter is there once a call \
                     charged it); {there}",
                    state.spec()
                );
                return (String::new(), 1);
            }
            Err(e) => Err(e),
        },
    };
    match report {
        Ok(report) => (report, 0),
        Err(e) => {
            eprintln!("toolwarden: {}: {}", state.spec(), e.0);
            (String::new(), 1)
        }
    }
}
