//! Hot reload: the policy file is watched (inotify, through `notify`). A
//! change that loads replaces the policy between two calls; one that does
//! not load leaves the old policy in force and is logged once.
//!
//! The file's directory is watched rather than the file, since editors
//! save by writing a new file and renaming it over the old one. Events
//! come in bursts (truncate, write, rename): the file is read once they
//! have been quiet for [`QUIET`].

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::Digest;
use tracing::{info, warn};

use crate::policy::Policy;
use crate::relay::Relay;

/// How long the file's events must pause before it is read.
pub const QUIET: Duration = Duration::from_millis(100);

/// Watches `path` and reloads `relay`'s policy when it changes. The watch
/// is set up on a thread of its own, off the session's start; a change
/// made before it is in place is caught by comparing the file with the
/// policy the session loaded.
pub fn start(path: &Path, relay: Arc<Relay>) -> std::io::Result<()> {
    let path = std::path::absolute(path)?;
    std::thread::Builder::new()
        .name("policy-reload".into())
        .spawn(move || {
            if let Err(e) = watch(&path, &relay) {
                warn!(
                    "{}: cannot be watched, so changes to it need a restart: {e:#}",
                    path.display()
                );
            }
        })?;
    Ok(())
}

fn watch(path: &Path, relay: &Relay) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let name = path.file_name().map(|n| n.to_owned());
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_owned()) == name);
            if ours && !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    // The session loaded the file its fingerprint names (the first 16 hex
    // digits of its SHA-256); a change since then is taken in now.
    let loaded = relay.policy().fingerprint.clone();
    let mut current = String::new();
    let mut last_error = None;
    if let Ok(bytes) = std::fs::read(path) {
        let now = sha256_hex(&bytes);
        if now.starts_with(&loaded) {
            current = now;
        } else {
            reload_once(path, relay, &mut current, &mut last_error);
        }
    }
    while rx.recv().is_ok() {
        while rx.recv_timeout(QUIET).is_ok() {}
        reload_once(path, relay, &mut current, &mut last_error);
    }
    drop(watcher);
    Ok(())
}

/// Reads the file and, when it changed and loads, puts it in place.
/// `current` is the hash of the file in force; `last_error` the last
/// reason a change did not load (logged once).
fn reload_once(path: &Path, relay: &Relay, current: &mut String, last_error: &mut Option<String>) {
    let Ok(bytes) = std::fs::read(path) else {
        // Gone for a moment (saved by rename), or for good: the policy in
        // force stays either way.
        return;
    };
    let hash = sha256_hex(&bytes);
    if hash == *current {
        return;
    }
    let loaded = std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| Policy::from_json(text).map_err(|e| e.to_string()));
    match loaded {
        Ok(policy) => {
            for warning in &policy.warnings {
                warn!("{}: {warning}", path.display());
            }
            if let Err(e) = relay.reload(policy, &hash) {
                warn!("could not tell the client its tools changed: {e}");
            }
            info!(sha256 = %hash, "{}: policy reloaded", path.display());
            *current = hash;
            *last_error = None;
        }
        Err(e) => {
            if last_error.as_ref() != Some(&e) {
                warn!(
                    "{}: the changed policy does not load, the one in force stays: {e}",
                    path.display()
                );
                *last_error = Some(e);
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
