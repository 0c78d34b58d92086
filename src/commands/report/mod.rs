//! `toolwarden report AUDIT.jsonl...`: what the audit logs say happened,
//! per tool (calls, refusals by decision, latency, approvals), then the
//! refusals' reasons, the counters that ran out and the identities; as a
//! table, as JSON, or as a page with charts.
//!
//! The logs are streamed line by line into a [`tally::Tally`], so memory
//! does not grow with their length, and only names, decisions and numbers
//! are read from them: the report cannot show an argument value, since it
//! never reads one. A line that does not read (a log cut short while it
//! was written, a line that is not an event) is counted and named, never
//! fatal.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cli::ReportArgs;

mod html;
pub mod tally;
#[cfg(test)]
mod tests;
mod text;

pub use tally::{Summary, Tally};

/// Lines longer than this are skipped unread (an audit line is at most
/// some 40 KiB, unless a client sent a tool name of megabytes).
pub const MAX_LINE: usize = 4 << 20;
/// Skipped lines named per file; the rest are counted.
const PROBLEMS_NAMED: usize = 5;

/// `--since`: a time, or a duration back from when the report runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(SystemTime),
}

impl Since {
    pub fn at(self, now: SystemTime) -> SystemTime {
        match self {
            Since::Ago(d) => now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
            Since::At(t) => t,
        }
    }
}

impl std::str::FromStr for Since {
    type Err = String;

    /// `24h`, `7d`, `90m`; or `2026-11-22T16:00:00Z`, with an offset
    /// (`+02:00`) or without (UTC), or a date (its midnight, UTC).
    fn from_str(text: &str) -> Result<Since, String> {
        let bad = || {
            format!(
                "{text}: neither a duration (24h, 7d) nor an RFC 3339 time (2026-11-22T16:00:00Z)"
            )
        };
        if let Ok(d) = humantime::parse_duration(text) {
            return Ok(Since::Ago(d));
        }
        if text.len() == 10 {
            return humantime::parse_rfc3339(&format!("{text}T00:00:00Z"))
                .map(Since::At)
                .map_err(|_| bad());
        }
        // humantime reads UTC only: an offset is taken off by hand.
        let (time, offset) = match text.len().checked_sub(6).map(|i| text.split_at(i)) {
            Some((time, zone))
                if (zone.starts_with('+') || zone.starts_with('-'))
                    && zone.as_bytes()[3] == b':'
                    && time.len() > 10 =>
            {
                let digits = |s: &str| s.parse::<u64>().ok().filter(|_| s.len() == 2);
                let (h, m) = (digits(&zone[1..3]), digits(&zone[4..6]));
                let (Some(h), Some(m)) = (h, m) else {
                    return Err(bad());
                };
                let secs = Duration::from_secs(h * 3600 + m * 60);
                (time, Some((zone.starts_with('+'), secs)))
            }
            _ => (text, None),
        };
        let utc =
            humantime::parse_rfc3339_weak(time.trim_end_matches(['Z', 'z'])).map_err(|_| bad())?;
        let at = match offset {
            // 16:00+02:00 is 14:00Z.
            Some((true, d)) => utc.checked_sub(d),
            Some((false, d)) => utc.checked_add(d),
            None => Some(utc),
        };
        at.map(Since::At).ok_or_else(bad)
    }
}

/// Runs the command: the report for stdout and the exit code, 0, or 2
/// when a file cannot be read or the page cannot be written (said on
/// stderr).
pub fn run(args: &ReportArgs) -> (String, u8) {
    let since = args.since.map(|s| s.at(SystemTime::now()));
    let summary = match read(&args.files, since) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return (String::new(), 2);
        }
    };
    if let Some(page) = &args.html {
        if let Err(e) = write_page(page, &html::page(&summary)) {
            eprintln!("toolwarden: {}: cannot write the page: {e}", page.display());
            return (String::new(), 2);
        }
        eprintln!("toolwarden: wrote {}", page.display());
    }
    let out = if args.json {
        let mut json = serde_json::to_string_pretty(&summary).expect("a summary serializes");
        json.push('\n');
        json
    } else {
        text::render(&summary)
    };
    (out, 0)
}

/// Reads every file (`-`: stdin) into one report.
pub fn read(files: &[std::path::PathBuf], since: Option<SystemTime>) -> anyhow::Result<Summary> {
    let mut tally = Tally::new(since);
    let mut read = Vec::with_capacity(files.len());
    for path in files {
        let summary = if path == Path::new("-") {
            tally_lines(&mut tally, io::stdin().lock(), "-")
        } else {
            let file = std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            tally_lines(
                &mut tally,
                BufReader::new(file),
                &path.display().to_string(),
            )
        };
        read.push(summary.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
    }
    let mut summary = tally.finish();
    summary.files = read;
    Ok(summary)
}

/// Counts one file's lines.
pub fn tally_lines(
    tally: &mut Tally,
    input: impl BufRead,
    name: &str,
) -> io::Result<tally::FileSummary> {
    let mut lines = Lines::new(input);
    let mut file = tally::FileSummary {
        path: name.to_owned(),
        lines: 0,
        skipped: 0,
        problems: Vec::new(),
    };
    while let Some(line) = lines.next_line()? {
        file.lines += 1;
        let counted = match line {
            Line::Whole(bytes) | Line::Last(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
                Ok(())
            }
            Line::Whole(bytes) => tally.line(bytes, true),
            Line::Last(bytes) => tally.line(bytes, false),
            Line::TooLong => Err(tally::Skipped::TooLong),
        };
        if let Err(why) = counted {
            file.skipped += 1;
            if file.problems.len() < PROBLEMS_NAMED {
                file.problems.push(tally::Problem {
                    line: file.lines,
                    why,
                });
            }
        }
    }
    Ok(file)
}

/// One line as read.
enum Line<'a> {
    /// Ended by a newline (not included).
    Whole(&'a [u8]),
    /// The file's last line, without a newline.
    Last(&'a [u8]),
    /// Longer than [`MAX_LINE`]: skipped as it was read.
    TooLong,
}

/// Lines of at most [`MAX_LINE`] bytes, in a reused buffer.
struct Lines<R> {
    input: R,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn new(input: R) -> Self {
        Lines {
            input,
            buf: Vec::new(),
        }
    }

    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let (mut any, mut too_long) = (false, false);
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(match (any, too_long) {
                    (false, _) => None,
                    (true, true) => Some(Line::TooLong),
                    (true, false) => Some(Line::Last(&self.buf)),
                });
            }
            any = true;
            let newline = memchr::memchr(b'\n', chunk);
            let take = newline.unwrap_or(chunk.len());
            if !too_long {
                if self.buf.len() + take > MAX_LINE {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.input.consume(take + usize::from(newline.is_some()));
            if newline.is_some() {
                return Ok(Some(if too_long {
                    Line::TooLong
                } else {
                    Line::Whole(self.buf.strip_suffix(b"\r").unwrap_or(&self.buf))
                }));
            }
        }
    }
}

/// Writes the page, readable by its owner only when it is new: it names
/// tools and identities, as the log it comes from does.
fn write_page(path: &Path, page: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(page.as_bytes())?;
    file.flush()
}
