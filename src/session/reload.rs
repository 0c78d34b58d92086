//! Hot reload: the policy file is watched (inotify, through `notify`). A
//! change that loads replaces the policy between two calls; one that does
//! not load leaves the old policy in force and is logged once.
//!
//! The file's directory is watched rather than the file, since editors
//! save by writing a new file and renaming it over the old one. A policy
//! path that is a symlink (dotfile managers keep files so) is followed:
//! the directory of every link on the way and of the file it ends at is
//! watched, so both a change to the file and a link pointed elsewhere are
//! seen. Events come in bursts (truncate, write, rename): the file is read
//! once they have been quiet for [`QUIET`]. Only a regular file is read,
//! and no more of it than a policy may hold (`policy::read_file`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use sha2::Digest;
use tracing::{info, warn};

use crate::policy::{self, Policy};
use crate::session::relay::Relay;

/// How long the file's events must pause before it is read.
pub const QUIET: Duration = Duration::from_millis(100);
/// The longest a read waits for the file's events to pause.
const MAX_WAIT: Duration = Duration::from_secs(1);

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
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(event.paths);
            }
        }
    })?;
    let mut chain = links(path);
    let mut watched = HashSet::new();
    // The link's own directory must be watched; the others are followed
    // as well as they can be (a target's directory may come later).
    let first = parent(&chain[0]);
    watcher.watch(&first, RecursiveMode::NonRecursive)?;
    watched.insert(first);
    watch_chain(&mut watcher, &chain, &mut watched);
    // The session loaded the file its fingerprint names (the first 16 hex
    // digits of its SHA-256); a change since then is taken in now.
    let loaded = relay.policy().fingerprint.clone();
    let mut current = String::new();
    let mut last_error = None;
    match policy::read_file(path) {
        Ok(bytes) if sha256_hex(&bytes).starts_with(&loaded) => current = sha256_hex(&bytes),
        // Changed, or become unreadable, between the start and now (before
        // anything watched it): taken in, or said, as any change is.
        _ => reload_once(path, relay, &mut current, &mut last_error),
    }
    while let Ok(paths) = rx.recv() {
        if !paths.iter().any(|p| chain.contains(p)) {
            continue;
        }
        // Read once the file's own events pause for QUIET. Other files'
        // events in the directories watched (a busy `/dev` when the link
        // points there, an audit log beside the policy) do not put it off,
        // and nothing puts it off past MAX_WAIT.
        let started = Instant::now();
        let mut last_ours = Instant::now();
        loop {
            let wait = QUIET.saturating_sub(last_ours.elapsed());
            if wait.is_zero() || started.elapsed() >= MAX_WAIT {
                break;
            }
            match rx.recv_timeout(wait) {
                Ok(paths) if paths.iter().any(|p| chain.contains(p)) => last_ours = Instant::now(),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        // A link may point elsewhere now: follow it there.
        chain = links(path);
        watch_chain(&mut watcher, &chain, &mut watched);
        reload_once(path, relay, &mut current, &mut last_error);
    }
    drop(watcher);
    Ok(())
}

/// The most links followed, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// `path`, every link it leads through, and the file it ends at, each
/// with its directory resolved (as the watcher names what it sees).
fn links(path: &Path) -> Vec<PathBuf> {
    let mut chain = vec![resolved_dir(path)];
    while chain.len() <= MAX_LINKS {
        let last = chain.last().expect("never empty");
        let Ok(target) = std::fs::read_link(last) else {
            break;
        };
        let next = resolved_dir(&parent(last).join(target));
        if chain.contains(&next) {
            break;
        }
        chain.push(next);
    }
    chain
}

/// `path` with its directory's links and `..` resolved, its own name kept.
fn resolved_dir(path: &Path) -> PathBuf {
    let dir = parent(path);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// Watches the directories of `chain` not watched yet.
fn watch_chain(watcher: &mut impl Watcher, chain: &[PathBuf], watched: &mut HashSet<PathBuf>) {
    for dir in chain.iter().map(|p| parent(p)) {
        if !watched.contains(&dir) && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
            watched.insert(dir);
        }
    }
}

/// Reads the file and, when it changed and loads, puts it in place.
/// `current` is the hash of the file in force; `last_error` the last
/// reason a change did not load (logged once).
fn reload_once(path: &Path, relay: &Relay, current: &mut String, last_error: &mut Option<String>) {
    let bytes = match policy::read_file(path) {
        Ok(bytes) => bytes,
        // Gone for a moment (saved by rename), or for good: the policy in
        // force stays either way.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            let e = format!("cannot be read: {e}");
            if last_error.as_ref() != Some(&e) {
                warn!("{}: {e}; the policy in force stays", path.display());
                *last_error = Some(e);
            }
            return;
        }
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
