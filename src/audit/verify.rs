//! `toolwarden audit verify FILE...`: walks the chains of audit logs (one
//! chain per session, across the files in the order given, so a log
//! rotated into several files is checked as one) and names every line that
//! was changed, removed, inserted or moved, or is not whole.
//!
//! Each line carries the MAC, under a key derived from the machine's audit
//! key, of its session's line before it; a session's first line carries
//! the MAC of the session's id. What that proves: the lines of each session
//! that are there were written by a holder of the key (toolwarden), in the
//! order it wrote them, with none taken out from between them. What it does
//! not: that a session's last lines were not cut off (a session that ended
//! in order has a `session_end` line saying how many lines came before it;
//! one that is missing it is reported), nor that a whole session was not
//! removed. Logs from before the chain was keyed (plain SHA-256, no
//! `"chain"` in `session_start`) are checked as such, and said to prove
//! nothing about who wrote them.

use std::collections::HashMap;

use serde::Deserialize;

use super::{key_id, line_hash, ChainKey, CHAIN};

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
    /// Sessions chained without a key, from before the chain was keyed:
    /// anyone who could write the file could have written them.
    pub unkeyed: Vec<String>,
}

#[derive(Deserialize)]
struct Fields {
    session: Option<String>,
    event: Option<String>,
    prev: Option<String>,
    lines: Option<u64>,
    chain: Option<String>,
    key: Option<String>,
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
    /// How its lines are hashed: an index into `Line::hashes`; `None`: it
    /// cannot be checked (its key was not given).
    scheme: Option<usize>,
}

/// A line of the log: where it is, its bytes, and its hashes: plain
/// SHA-256 first, then its MAC under each key given.
struct Line<'a> {
    place: Place,
    bytes: &'a [u8],
    hashes: Vec<String>,
}

/// Verifies `files` (name and content), in order, with the audit keys
/// `keys` (a session names the key of its chain). It does not stop at the
/// first break: a damaged line is reported and the lines after it are
/// checked, each session's chain going on from the line where it broke.
pub fn verify(files: &[(String, Vec<u8>)], keys: &[[u8; 32]]) -> Report {
    let chain_keys: Vec<ChainKey> = keys.iter().map(ChainKey::of).collect();
    let key_ids: Vec<String> = keys.iter().map(key_id).collect();
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
                hashes: Vec::new(),
            });
        }
    }
    let mut report = Report {
        lines: all.len(),
        sessions: 0,
        broken: Vec::new(),
        unfinished: Vec::new(),
        unkeyed: Vec::new(),
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
        line.hashes = std::iter::once(line_hash(bytes))
            .chain(chain_keys.iter().map(|k| k.mac(bytes)))
            .collect();
        events.push(Some(fields));
    }
    // Every line's hash, to tell a moved or inserted line from a changed
    // one.
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .flat_map(|(i, line)| line.hashes.iter().map(move |h| (h.as_str(), i)))
        .collect();
    let mut chains: HashMap<String, Chain> = HashMap::new();
    // Where a keyed session started first: no toolwarden writes unkeyed
    // chains since, so an unkeyed session after it is suspect.
    let mut keyed_since: Option<Place> = None;
    for (at, (line, fields)) in all.iter().zip(events).enumerate() {
        let Some(fields) = fields else { continue };
        let place = &line.place;
        let Some(session) = fields.session else {
            report
                .broken
                .push(format!("{place}: an event without a session"));
            continue;
        };
        let hash = |scheme: Option<usize>| line.hashes[scheme.unwrap_or(0)].clone();
        let start = |last, broken, scheme| Chain {
            last,
            count: 1,
            ended: false,
            broken,
            scheme,
        };
        if fields.event.as_deref() == Some("session_start") {
            let mut again = chains.contains_key(&session);
            let scheme = match fields.chain.as_deref() {
                None => {
                    // A start line from before the chain was keyed has no
                    // `prev`.
                    again |= fields.prev.is_some();
                    if let Some(first) = &keyed_since {
                        report.broken.push(format!(
                            "{place}: session {session} is chained without a key, after sessions \
                             chained with one (from {first}): forged by someone without the key, \
                             or written by a toolwarden from before keyed chains"
                        ));
                    }
                    report.unkeyed.push(session.clone());
                    Some(0)
                }
                Some(CHAIN) => {
                    keyed_since.get_or_insert_with(|| place.clone());
                    let known = fields
                        .key
                        .as_deref()
                        .and_then(|id| key_ids.iter().position(|k| k == id));
                    match known {
                        Some(k) => {
                            if fields.prev.as_deref() != Some(&chain_keys[k].anchor(&session)) {
                                report.broken.push(format!(
                                    "{place}: the start of session {session} was not written with \
                                     its key: changed, or forged"
                                ));
                            }
                            Some(k + 1)
                        }
                        None => {
                            report.broken.push(format!(
                                "{place}: session {session} is chained under audit key {}, which \
                                 was not given (--key FILE): its lines cannot be checked",
                                fields.key.as_deref().unwrap_or("(none)")
                            ));
                            None
                        }
                    }
                }
                Some(other) => {
                    report.broken.push(format!(
                        "{place}: session {session} is chained with {other:?}, which this \
                         toolwarden does not know: its lines cannot be checked"
                    ));
                    None
                }
            };
            if again {
                report.broken.push(format!(
                    "{place}: a second start of session {session}: the line was inserted or changed"
                ));
            } else {
                report.sessions += 1;
            }
            // The session is checked on from here.
            let here = (hash(scheme), place.clone());
            chains.insert(session, start(here, again, scheme));
            continue;
        }
        let Some(chain) = chains.get_mut(&session) else {
            report.broken.push(format!(
                "{place}: session {session} has no start line before it: its start was removed, \
                 or this line was inserted"
            ));
            // Without its start, how its lines are chained is not known.
            let here = (hash(None), place.clone());
            chains.insert(session, start(here, true, None));
            continue;
        };
        let here = (hash(chain.scheme), place.clone());
        if chain.scheme.is_none() {
            // Reported at its start; its lines are counted, not checked.
            chain.count += 1;
            chain.ended |= fields.event.as_deref() == Some("session_end");
            chain.last = here;
            continue;
        }
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
                    "{place}: session {session} wrote {} before its end, {} here: lines were removed or inserted",
                    crate::plural::count(fields.lines.unwrap_or(0), "line"),
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

    /// The audit key of the tests' logs.
    const KEY: [u8; 32] = [7; 32];

    /// How a line's successor names it: keyed, or as before the chain was.
    fn link(key: Option<&[u8; 32]>, line: &[u8]) -> String {
        match key {
            Some(key) => ChainKey::of(key).mac(line),
            None => line_hash(line),
        }
    }

    /// A log as the writer makes it, under `KEY`.
    fn log(session: &str, events: &[&str]) -> Vec<Vec<u8>> {
        log_under(Some(&KEY), session, events)
    }

    /// A log as the writer makes it under `key`, or as a writer made it
    /// before the chain was keyed.
    fn log_under(key: Option<&[u8; 32]>, session: &str, events: &[&str]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut prev = key.map(|k| ChainKey::of(k).anchor(session));
        let all = std::iter::once("session_start".to_owned())
            .chain(events.iter().map(|e| (*e).to_owned()))
            .chain(std::iter::once("session_end".to_owned()));
        for (i, event) in all.enumerate() {
            let extra = match (event.as_str(), key) {
                ("session_end", _) => format!(r#","lines":{i}"#),
                ("session_start", Some(key)) => {
                    format!(r#","chain":"hmac-sha256","key":"{}""#, key_id(key))
                }
                _ => String::new(),
            };
            let raw = format!(
                r#"{{"ts":"2026-11-28T00:00:0{}Z","session":"{session}","event":"{event}"{extra}}}"#,
                i % 10
            ) + "\n";
            let line = super::super::chained(raw.as_bytes(), prev.as_deref());
            prev = Some(link(key, &line));
            lines.push(line);
        }
        lines
    }

    /// Lines of session `session` as the writer makes them after `last`,
    /// the last one a session_end.
    fn log_after(last: &[u8], session: &str, events: &[&str]) -> Vec<Vec<u8>> {
        let mut prev = link(Some(&KEY), last);
        let mut lines = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let raw = format!(
                r#"{{"ts":"2026-11-28T00:00:1{i}Z","session":"{session}","event":"{event}"}}"#
            ) + "\n";
            let line = super::super::chained(raw.as_bytes(), Some(&prev));
            prev = link(Some(&KEY), &line);
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
        verify(&[("audit.jsonl".into(), lines.concat())], &[KEY])
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
        assert!(verify(&files, &[KEY]).broken.is_empty());
        let reversed = [files[1].clone(), files[0].clone()];
        assert!(!verify(&reversed, &[KEY]).broken.is_empty());
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

    #[test]
    fn a_session_forged_without_the_key_does_not_verify() {
        let good = log("a", &["decision", "result"]);
        let with = |forged: &[Vec<u8>]| check(&[good.clone(), forged.to_vec()].concat());
        // Chained as before the chain was keyed: anyone can.
        let r = with(&log_under(None, "f", &["decision"]));
        assert_eq!(r.broken.len(), 1, "{:?}", r.broken);
        assert!(
            r.broken[0].starts_with("audit.jsonl:5: session f is chained without a key, after sessions chained with one (from audit.jsonl:1)"),
            "{:?}",
            r.broken
        );
        // Under another key, naming it or naming ours.
        let other = [8; 32];
        let r = with(&log_under(Some(&other), "f", &["decision"]));
        assert_eq!(
            r.broken,
            [format!(
                "audit.jsonl:5: session f is chained under audit key {}, which was not given (--key FILE): its lines cannot be checked",
                key_id(&other)
            )]
        );
        let ours = key_id(&KEY);
        let claimed: Vec<Vec<u8>> = log_under(Some(&other), "f", &["decision"])
            .into_iter()
            .map(|l| {
                String::from_utf8(l)
                    .unwrap()
                    .replace(&key_id(&other), &ours)
                    .into_bytes()
            })
            .collect();
        let r = with(&claimed);
        assert_eq!(
            r.broken[0],
            "audit.jsonl:5: the start of session f was not written with its key: changed, or forged"
        );
        // The same session verifies under its own key, given too.
        let forged = log_under(Some(&other), "f", &["decision"]);
        let both = verify(
            &[("audit.jsonl".into(), [good, forged].concat().concat())],
            &[KEY, other],
        );
        assert!(both.broken.is_empty(), "{:?}", both.broken);
    }

    #[test]
    fn a_log_from_before_the_chain_was_keyed_verifies_and_says_so() {
        let mut lines = log_under(None, "old", &["decision", "result"]);
        lines.extend(log("new", &["decision"]));
        let r = check(&lines);
        assert!(r.broken.is_empty(), "{:?}", r.broken);
        assert_eq!(r.unkeyed, ["old"]);
        assert_eq!(r.sessions, 2);
        // An edit in it is still found.
        lines[2] = String::from_utf8(lines[2].clone())
            .unwrap()
            .replace("result", "decision")
            .into_bytes();
        assert!(check(&lines).broken[0].starts_with("audit.jsonl:3: changed"));
    }
}
