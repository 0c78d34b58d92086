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
    /// Every break in a chain and every damaged line, in words, in the
    /// order of the log; empty: every chain holds.
    pub broken: Vec<String>,
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
    /// A break was reported: the chain goes on from the line after it, and
    /// its count no longer adds up.
    broken: bool,
}

/// A line of the log: where it is, its bytes, its hash.
struct Line<'a> {
    place: Place,
    bytes: &'a [u8],
    hash: String,
}

/// Verifies `files` (name and content), in order. It does not stop at the
/// first break: a damaged line is reported and the lines after it are
/// checked, each session's chain going on from the line where it broke.
pub fn verify(files: &[(String, Vec<u8>)]) -> Report {
    let mut all: Vec<Line> = Vec::new();
    for (name, content) in files {
        for (i, bytes) in content.split(|&b| b == b'\n').enumerate() {
            if bytes.is_empty() {
                continue;
            }
            all.push(Line {
                place: Place {
                    file: name.clone(),
                    line: i + 1,
                },
                bytes,
                hash: String::new(),
            });
        }
    }
    let mut report = Report {
        lines: all.len(),
        sessions: 0,
        broken: Vec::new(),
        unfinished: Vec::new(),
    };
    // Each line's event; a damaged line is reported here, and what can
    // be read of it is kept.
    let mut events = Vec::with_capacity(all.len());
    for line in &mut all {
        let (bytes, fields) = match read(line.bytes) {
            Some(read) => read,
            None => {
                report.broken.push(format!(
                    "{}: not a whole audit line (a write cut short, or an edit)",
                    line.place
                ));
                events.push(None);
                continue;
            }
        };
        if bytes.len() < line.bytes.len() {
            report.broken.push(format!(
                "{}: not a whole audit line (a write cut short, or an edit): the line glued to its end is checked",
                line.place
            ));
        }
        line.bytes = bytes;
        line.hash = line_hash(bytes);
        events.push(Some(fields));
    }
    // Every line's hash, to tell a moved or inserted line from a changed
    // one.
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, line)| (line.hash.as_str(), i))
        .collect();
    let mut chains: HashMap<String, Chain> = HashMap::new();
    for (at, (line, fields)) in all.iter().zip(events).enumerate() {
        let Some(fields) = fields else { continue };
        let place = &line.place;
        let Some(session) = fields.session else {
            report
                .broken
                .push(format!("{place}: an event without a session"));
            continue;
        };
        let here = (line.hash.clone(), place.clone());
        let start = |last, broken| Chain {
            last,
            count: 1,
            ended: false,
            broken,
        };
        if fields.event.as_deref() == Some("session_start") {
            let again = fields.prev.is_some() || chains.contains_key(&session);
            if again {
                report.broken.push(format!(
                    "{place}: a second start of session {session}: the line was inserted or changed"
                ));
            } else {
                report.sessions += 1;
            }
            // The session is checked on from here.
            chains.insert(session, start(here, again));
            continue;
        }
        let Some(chain) = chains.get_mut(&session) else {
            report.broken.push(format!(
                "{place}: session {session} has no start line before it: its start was removed, \
                 or this line was inserted"
            ));
            chains.insert(session, start(here, true));
            continue;
        };
        let (expected, before) = &chain.last;
        if fields.prev.as_deref() != Some(expected.as_str()) {
            let found = fields.prev.as_deref().and_then(|p| index.get(p).copied());
            report.broken.push(match found {
                Some(j) if j > at => format!(
                    "{place}: out of order: it follows {} in the log as written (lines moved or swapped)",
                    all[j].place
                ),
                Some(j) if all[j].place != *before => format!(
                    "{before}: inserted, or moved here: {place} follows {} in the log as written",
                    all[j].place
                ),
                _ => format!(
                    "{before}: changed, or a line after it was removed: {place} does not follow it"
                ),
            });
            chain.broken = true;
        }
        if chain.ended {
            report.broken.push(format!(
                "{place}: a line after the end of session {session}: inserted"
            ));
            chain.broken = true;
        }
        if fields.event.as_deref() == Some("session_end") {
            if !chain.broken && fields.lines != Some(chain.count) {
                report.broken.push(format!(
                    "{place}: session {session} wrote {} lines before its end, {} are here: lines were removed or inserted",
                    fields.lines.unwrap_or(0),
                    chain.count
                ));
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

/// A line's event, or the event glued to the end of a piece of a line (a
/// write cut short by an older toolwarden left half a line for the next
/// one to follow): the bytes that were read, and their fields.
fn read(line: &[u8]) -> Option<(&[u8], Fields)> {
    let parse = |bytes: &[u8]| {
        serde_json::from_slice::<Fields>(bytes)
            .ok()
            .filter(|f| f.session.is_some())
    };
    if let Ok(fields) = serde_json::from_slice::<Fields>(line) {
        return Some((line, fields));
    }
    // Every line toolwarden writes starts with one of these.
    let starts = [&b"{\"prev\":\""[..], &b"{\"ts\":\""[..]];
    (1..line.len())
        .filter(|&i| starts.iter().any(|s| line[i..].starts_with(s)))
        .find_map(|i| parse(&line[i..]).map(|fields| (&line[i..], fields)))
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

    /// Lines of session `session` as the writer makes them after `last`,
    /// the last one a session_end.
    fn log_after(last: &[u8], session: &str, events: &[&str]) -> Vec<Vec<u8>> {
        let mut prev = line_hash(last);
        let mut lines = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let raw = format!(
                r#"{{"ts":"2026-11-28T00:00:1{i}Z","session":"{session}","event":"{event}"}}"#
            ) + "\n";
            let line = super::super::chained(raw.as_bytes(), Some(&prev));
            prev = line_hash(&line);
            lines.push(line);
        }
        let raw = format!(
            r#"{{"ts":"2026-11-28T00:00:19Z","session":"{session}","event":"session_end","lines":{}}}"#,
            2 + events.len()
        ) + "\n";
        lines.push(super::super::chained(raw.as_bytes(), Some(&prev)));
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
        assert_eq!(r.broken, Vec::<String>::new());
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
            check(&edited).broken[0],
            "audit.jsonl:3: changed, or a line after it was removed: audit.jsonl:4 does not follow it"
        );
        // Line 3 deleted.
        let mut deleted = good.clone();
        deleted.remove(2);
        assert_eq!(
            check(&deleted).broken[0],
            "audit.jsonl:2: changed, or a line after it was removed: audit.jsonl:3 does not follow it"
        );
        // Lines 3 and 4 swapped.
        let mut swapped = good.clone();
        swapped.swap(2, 3);
        assert_eq!(
            check(&swapped).broken[0],
            "audit.jsonl:3: out of order: it follows audit.jsonl:4 in the log as written (lines moved or swapped)"
        );
        // A copy of line 2 inserted after it.
        let mut inserted = good.clone();
        inserted.insert(2, good[1].clone());
        assert!(!check(&inserted).broken.is_empty());
        // The end cut off.
        let mut cut = good.clone();
        cut.truncate(4);
        let r = check(&cut);
        assert_eq!(r.broken, Vec::<String>::new());
        assert_eq!(r.unfinished, vec!["a (last line audit.jsonl:4)".to_owned()]);
    }

    #[test]
    fn a_log_rotated_into_two_files_verifies_in_order() {
        let lines = log("a", &["decision", "result", "decision"]);
        let files = [
            ("audit.jsonl.1".to_owned(), lines[..3].concat()),
            ("audit.jsonl".to_owned(), lines[3..].concat()),
        ];
        assert!(verify(&files).broken.is_empty());
        let reversed = [files[1].clone(), files[0].clone()];
        assert!(!verify(&reversed).broken.is_empty());
    }

    #[test]
    fn a_damaged_line_is_named_and_the_lines_after_it_are_checked() {
        let good = log("a", &["decision", "result", "decision", "result"]);
        let piece = &good[2][..20];
        // An older writer: line 3 cut short by a full disk, and line 4
        // (chained to line 2, as line 3 was never written) glued to it.
        let mut lines = good.clone();
        lines[2] = piece.to_vec();
        let written_after = log_after(&good[1], "a", &["result", "decision", "result"]);
        lines.truncate(2);
        lines.push([piece, &written_after[0]].concat());
        lines.extend(written_after[1..].iter().cloned());
        let r = check(&lines);
        assert_eq!(
            r.broken,
            ["audit.jsonl:3: not a whole audit line (a write cut short, or an edit): the line glued to its end is checked"]
        );
        // Today's writer: the piece left alone on its line. An edit after it
        // is still found.
        let mut lines = good.clone();
        lines.insert(2, [piece, b"\n"].concat());
        lines[4] = String::from_utf8(lines[4].clone())
            .unwrap()
            .replace("decision", "result")
            .into_bytes();
        let r = check(&lines);
        assert_eq!(
            r.broken,
            [
                "audit.jsonl:3: not a whole audit line (a write cut short, or an edit)",
                "audit.jsonl:5: changed, or a line after it was removed: audit.jsonl:6 does not follow it",
            ]
        );
        assert!(r.unfinished.is_empty());
    }
}
