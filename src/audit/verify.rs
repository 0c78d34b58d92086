//! `toolwarden audit verify FILE...`: walks the hash chains of audit logs
//! (one chain per session, across the files in the order given, so a log
//! rotated into several files is checked as one) and names the first line
//! that was changed, removed, inserted or moved.
//!
//! What it proves: the lines of each session that are there are the lines
//! toolwarden wrote, in the order it wrote them, with none taken out from
//! between them. What it does not: that a session's last lines were not cut
//! off (a session that ended in order has a `session_end` line saying how
//! many lines came before it; one that is missing it is reported), nor that
//! a whole session was not removed, nor anything about a file rewritten
//! whole by someone who can run toolwarden's hashing: the chain has no
//! secret. Ship the log elsewhere as it is written for that.

use std::collections::HashMap;

use serde::Deserialize;

use super::line_hash;

/// Where the verdict points: a file and a line in it, from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The outcome of a verification.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub lines: usize,
    pub sessions: usize,
    /// The first break in a chain, in words; `None`: every chain holds.
    pub broken: Option<String>,
    /// Sessions without a `session_end` line: cut off, or still running,
    /// or ended by a crash.
    pub unfinished: Vec<String>,
}

#[derive(Deserialize)]
struct Fields {
    session: Option<String>,
    event: Option<String>,
    prev: Option<String>,
    lines: Option<u64>,
}

/// One session's chain so far.
struct Chain {
    /// The hash of its last line, and where that line is.
    last: (String, Place),
    count: u64,
    ended: bool,
}

/// Verifies `files` (name and content), in order.
pub fn verify(files: &[(String, Vec<u8>)]) -> Report {
    // Every line's hash, to tell a moved or inserted line from a changed
    // one.
    let mut all: Vec<(Place, &[u8], String)> = Vec::new();
    for (name, content) in files {
        for (i, line) in content.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let place = Place {
                file: name.clone(),
                line: i + 1,
            };
            all.push((place, line, line_hash(line)));
        }
    }
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, (_, _, hash))| (hash.as_str(), i))
        .collect();
    let mut chains: HashMap<String, Chain> = HashMap::new();
    let mut report = Report {
        lines: all.len(),
        sessions: 0,
        broken: None,
        unfinished: Vec::new(),
    };
    for (at, (place, line, hash)) in all.iter().enumerate() {
        let Ok(fields) = serde_json::from_slice::<Fields>(line) else {
            report.broken = Some(format!("{place}: not an audit event"));
            return report;
        };
        let Some(session) = fields.session else {
            report.broken = Some(format!("{place}: an event without a session"));
            return report;
        };
        let here = (hash.clone(), place.clone());
        if fields.event.as_deref() == Some("session_start") {
            if fields.prev.is_some() || chains.contains_key(&session) {
                report.broken = Some(format!(
                    "{place}: a second start of session {session}: the line was inserted or changed"
                ));
                return report;
            }
            chains.insert(
                session,
                Chain {
                    last: here,
                    count: 1,
                    ended: false,
                },
            );
            report.sessions += 1;
            continue;
        }
        let Some(chain) = chains.get_mut(&session) else {
            report.broken = Some(format!(
                "{place}: session {session} has no start line before it: its start was removed, \
                 or this line was inserted"
            ));
            return report;
        };
        let (expected, before) = &chain.last;
        if fields.prev.as_deref() != Some(expected.as_str()) {
            let found = fields.prev.as_deref().and_then(|p| index.get(p).copied());
            report.broken = Some(match found {
                Some(j) if j > at => format!(
                    "{place}: out of order: it follows {} in the log as written (lines moved or swapped)",
                    all[j].0
                ),
                Some(j) if all[j].0 != *before => format!(
                    "{before}: inserted, or moved here: {place} follows {} in the log as written",
                    all[j].0
                ),
                _ => format!(
                    "{before}: changed, or a line after it was removed: {place} does not follow it"
                ),
            });
            return report;
        }
        if chain.ended {
            report.broken = Some(format!(
                "{place}: a line after the end of session {session}: inserted"
            ));
            return report;
        }
        if fields.event.as_deref() == Some("session_end") {
            if fields.lines != Some(chain.count) {
                report.broken = Some(format!(
                    "{place}: session {session} wrote {} lines before its end, {} are here: lines were removed or inserted",
                    fields.lines.unwrap_or(0),
                    chain.count
                ));
                return report;
            }
            chain.ended = true;
        }
        chain.count += 1;
        chain.last = here;
    }
    let mut unfinished: Vec<String> = chains
        .into_iter()
        .filter(|(_, c)| !c.ended)
        .map(|(session, c)| format!("{session} (last line {})", c.last.1))
        .collect();
    unfinished.sort();
    report.unfinished = unfinished;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log as the writer makes it.
    fn log(session: &str, events: &[&str]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut prev: Option<String> = None;
        let all = std::iter::once("session_start".to_owned())
            .chain(events.iter().map(|e| (*e).to_owned()))
            .chain(std::iter::once("session_end".to_owned()));
        for (i, event) in all.enumerate() {
            let extra = if event == "session_end" {
                format!(r#","lines":{i}"#)
            } else {
                String::new()
            };
            let raw = format!(
                r#"{{"ts":"2026-11-28T00:00:0{}Z","session":"{session}","event":"{event}"{extra}}}"#,
                i % 10
            ) + "\n";
            let line = super::super::chained(raw.as_bytes(), prev.as_deref());
            prev = Some(line_hash(&line));
            lines.push(line);
        }
        lines
    }

    fn check(lines: &[Vec<u8>]) -> Report {
        verify(&[("audit.jsonl".into(), lines.concat())])
    }

    #[test]
    fn an_untouched_log_verifies() {
        let mut lines = log("a", &["decision", "result", "decision"]);
        // Two sessions interleaved, as two processes appending to one file.
        let b = log("b", &["decision"]);
        lines.insert(2, b[0].clone());
        lines.insert(4, b[1].clone());
        lines.push(b[2].clone());
        let r = check(&lines);
        assert_eq!(r.broken, None);
        assert_eq!((r.lines, r.sessions), (8, 2));
        assert!(r.unfinished.is_empty());
    }

    #[test]
    fn each_kind_of_tampering_is_named_at_its_line() {
        let good = log("a", &["decision", "result", "decision", "result"]);
        // Line 3 edited.
        let mut edited = good.clone();
        edited[2] = String::from_utf8(edited[2].clone())
            .unwrap()
            .replace("result", "decision")
            .into_bytes();
        assert_eq!(
            check(&edited).broken.unwrap(),
            "audit.jsonl:3: changed, or a line after it was removed: audit.jsonl:4 does not follow it"
        );
        // Line 3 deleted.
        let mut deleted = good.clone();
        deleted.remove(2);
        assert_eq!(
            check(&deleted).broken.unwrap(),
            "audit.jsonl:2: changed, or a line after it was removed: audit.jsonl:3 does not follow it"
        );
        // Lines 3 and 4 swapped.
        let mut swapped = good.clone();
        swapped.swap(2, 3);
        assert_eq!(
            check(&swapped).broken.unwrap(),
            "audit.jsonl:3: out of order: it follows audit.jsonl:4 in the log as written (lines moved or swapped)"
        );
        // A copy of line 2 inserted after it.
        let mut inserted = good.clone();
        inserted.insert(2, good[1].clone());
        assert!(check(&inserted).broken.is_some());
        // The end cut off.
        let mut cut = good.clone();
        cut.truncate(4);
        let r = check(&cut);
        assert_eq!(r.broken, None);
        assert_eq!(r.unfinished, vec!["a (last line audit.jsonl:4)".to_owned()]);
    }

    #[test]
    fn a_log_rotated_into_two_files_verifies_in_order() {
        let lines = log("a", &["decision", "result", "decision"]);
        let files = [
            ("audit.jsonl.1".to_owned(), lines[..3].concat()),
            ("audit.jsonl".to_owned(), lines[3..].concat()),
        ];
        assert_eq!(verify(&files).broken, None);
        let reversed = [files[1].clone(), files[0].clone()];
        assert!(verify(&reversed).broken.is_some());
    }
}
