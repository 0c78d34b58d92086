//! `toolwarden audit verify FILE...`: the keyed chains of audit logs
//! checked, each line changed, removed, inserted, moved or cut off named.

use std::path::PathBuf;

use crate::audit;
use crate::cli::AuditCommand;
use crate::plural::count;

/// Runs one command: what to print, and the exit code (0 every chain
/// holds, 1 one is broken, 2 a file cannot be read).
pub fn run(command: &AuditCommand) -> (String, u8) {
    match command {
        AuditCommand::Verify { files, key } => verify(files, key),
    }
}

fn verify(files: &[PathBuf], key_files: &[PathBuf]) -> (String, u8) {
    let mut keys = Vec::new();
    for file in key_files {
        match audit::read_key(file) {
            Ok(key) => keys.push(key),
            Err(e) => {
                eprintln!("toolwarden: {}: {e}", file.display());
                return (String::new(), 2);
            }
        }
    }
    // The machine's key, when none is named; never created here: a log
    // written under a key is checked with that key or not at all.
    if key_files.is_empty() {
        if let Some(path) = audit::key_path() {
            match audit::read_key(&path) {
                Ok(key) => keys.push(key),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!("toolwarden: {}: {e}", path.display());
                    return (String::new(), 2);
                }
            }
        }
    }
    let mut read = Vec::new();
    for file in files {
        match std::fs::read(file) {
            Ok(content) => read.push((file.display().to_string(), content)),
            Err(e) => {
                eprintln!("toolwarden: {}: {e}", file.display());
                return (String::new(), 2);
            }
        }
    }
    let report = audit::verify::verify(&read, &keys);
    let mut out = String::new();
    for session in &report.unkeyed {
        out.push_str(&format!(
            "note: session {session} is chained without a key (written before keyed chains): \
             whoever could write the file could have written it\n"
        ));
    }
    for session in &report.unfinished {
        out.push_str(&format!(
            "note: session {session} has no end line: still running, ended by a crash, or its end was cut off\n"
        ));
    }
    // Each break is named; past the first few, a damaged file would
    // drown the ones that matter.
    const SHOWN: usize = 20;
    for broken in report.broken.iter().take(SHOWN) {
        out.push_str(&format!("broken: {broken}\n"));
    }
    if report.broken.len() > SHOWN {
        out.push_str(&format!(
            "broken: and {} more\n",
            report.broken.len() - SHOWN
        ));
    }
    if !report.broken.is_empty() {
        return (out, 1);
    }
    out.push_str(&format!(
        "ok: {}, {}, every chain holds\n",
        count(report.lines, "line"),
        count(report.sessions, "session")
    ));
    (out, 0)
}
