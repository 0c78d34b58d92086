//! A desktop notification when a call starts to wait in the inbox, so
//! that the person who must decide hears of it without reading the
//! client's logs. Shown through what a desktop has already, never a
//! library: `notify-send`, else `gdbus` (D-Bus's
//! org.freedesktop.Notifications), on Linux; `osascript` on macOS.
//!
//! A notification never holds up the call and never fails anything: the
//! program runs from a thread of its own with stdin, stdout and stderr on
//! /dev/null (it can never write to the protocol's stdout), is waited for
//! there (and killed if it hangs), and whatever goes wrong is a debug log
//! line. The tool's name comes from the agent: it is passed as an
//! argument, never through a shell, with control characters taken out
//! and its length capped.

use std::ffi::OsString;
use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing::debug;

/// Off until a session turns it on (`--no-notify` keeps it off), so that
/// nothing but a session ever notifies.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Notifiers running now; past [`MAX_RUNNING`] (a notifier that hangs, a
/// flood of calls) no more are started.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
const MAX_RUNNING: usize = 4;
/// A notifier still running after this is killed.
const PATIENCE: Duration = Duration::from_secs(10);
/// The most of a tool's name shown, in characters.
const TOOL_SHOWN: usize = 64;

const TITLE: &str = "toolwarden: a call waits for approval";

/// Turns notifications on (a session without `--no-notify`) or off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Where notifications can be shown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Desktop {
    /// A D-Bus session bus (Linux, BSD).
    Freedesktop,
    MacOs,
}

impl Desktop {
    /// The desktop of this process, if one looks reachable: on macOS
    /// always; elsewhere when a D-Bus session bus is named.
    fn here() -> Option<Desktop> {
        if cfg!(target_os = "macos") {
            return Some(Desktop::MacOs);
        }
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS")
            .filter(|a| !a.is_empty())
            .map(|_| Desktop::Freedesktop)
    }
}

/// Says that the call of `tool` waits as approval `id`, and how to
/// approve it. Returns at once.
pub fn approval_waiting(tool: &str, id: &str) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(desktop) = Desktop::here() else {
        return;
    };
    if RUNNING.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        debug!("no desktop notification: {MAX_RUNNING} notifiers still running");
        return;
    }
    let choices = commands(desktop, tool, id);
    let spawned = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            if let Err(e) = show(&choices) {
                debug!("no desktop notification: {e}");
            }
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        debug!("no desktop notification: no thread for it: {e}");
    }
}

/// Runs the first of `choices` that is installed, and waits for it.
fn show(choices: &[Vec<OsString>]) -> io::Result<()> {
    let mut missing = Vec::new();
    for argv in choices {
        let spawned = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(argv[0].to_string_lossy().into_owned());
                continue;
            }
            Err(e) => return Err(e),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return match status.success() {
                    true => Ok(()),
                    false => Err(io::Error::other(format!(
                        "{} ended with {status}",
                        argv[0].to_string_lossy()
                    ))),
                };
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "{} did not end within {PATIENCE:?}",
                    argv[0].to_string_lossy()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Err(io::Error::other(format!(
        "none of {} is installed",
        missing.join(", ")
    )))
}

/// The programs that can show the notification, best first, each as its
/// argument vector.
fn commands(desktop: Desktop, tool: &str, id: &str) -> Vec<Vec<OsString>> {
    let tool = shown(tool);
    let approve = format!("toolwarden approvals approve {}", shown(id));
    let argv = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
    match desktop {
        Desktop::Freedesktop => {
            // Notification servers may read the body as markup.
            let body = markup_escaped(&format!("{tool} waits for your approval: {approve}"));
            vec![
                argv(&["notify-send", "--app-name=toolwarden", "--", TITLE, &body]),
                // Notify(app_name, replaces_id, app_icon, summary, body,
                // actions, hints, expire_timeout), each in GVariant's text
                // form, as gdbus reads its arguments.
                argv(&[
                    "gdbus",
                    "call",
                    "--session",
                    "--dest",
                    "org.freedesktop.Notifications",
                    "--object-path",
                    "/org/freedesktop/Notifications",
                    "--method",
                    "org.freedesktop.Notifications.Notify",
                    "\"toolwarden\"",
                    "0",
                    "\"\"",
                    &gvariant_string(TITLE),
                    &gvariant_string(&body),
                    "[]",
                    "{}",
                    "10000",
                ]),
            ]
        }
        // The texts are the script's arguments (`argv`), not part of its
        // source: no quoting to get wrong, nothing a name can inject. The
        // title comes first, so that no text that starts with `-` is
        // taken for an option.
        Desktop::MacOs => vec![argv(&[
            "osascript",
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
            TITLE,
            &format!("{tool} waits for your approval: {approve}"),
        ])],
    }
}

/// Text from a peer fit for a notification: no control characters (nor
/// line and paragraph separators), at most [`TOOL_SHOWN`] characters.
fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}'))
        .enumerate()
    {
        if i == TOOL_SHOWN {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// `&`, `<` and `>` as entities, for a body read as markup.
fn markup_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A string in GVariant's text form: quoted, `\` and `"` escaped.
fn gvariant_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_notification_names_the_tool_and_the_command_that_approves_it() {
        let linux = commands(Desktop::Freedesktop, "retry_deploy", "xjd7kd44");
        let body = "retry_deploy waits for your approval: toolwarden approvals approve xjd7kd44";
        assert_eq!(
            strings(&linux[0]),
            ["notify-send", "--app-name=toolwarden", "--", TITLE, body]
        );
        let gdbus = strings(&linux[1]);
        assert_eq!(gdbus[0], "gdbus");
        assert_eq!(
            gdbus[12..15],
            [format!("\"{TITLE}\""), format!("\"{body}\""), "[]".into()]
        );
        let mac = strings(&commands(Desktop::MacOs, "retry_deploy", "xjd7kd44")[0]);
        assert_eq!(mac[0], "osascript");
        assert_eq!(mac[7..], [TITLE, body]);
    }

    #[test]
    fn a_tool_name_cannot_break_out_of_its_place() {
        let tool = format!("a\"b\\c\n<b>&x</b>\u{1b}[2J\u{2028}{}", "y".repeat(100));
        let linux = commands(Desktop::Freedesktop, &tool, "id");
        let body = strings(&linux[0])[4].clone();
        assert!(
            body.starts_with("a\"b\\c&lt;b&gt;&amp;x&lt;/b&gt;[2Jyyy"),
            "{body}"
        );
        assert!(!body.chars().any(char::is_control), "{body}");
        assert!(body.contains("y… waits for your approval"), "{body}");
        // In gdbus's text form, the quote and the backslash are escaped.
        let gdbus = strings(&linux[1])[13].clone();
        assert!(gdbus.starts_with(r#""a\"b\\c&lt;"#), "{gdbus}");
        assert!(gdbus.ends_with(r#"approve id""#), "{gdbus}");
        let mac = strings(&commands(Desktop::MacOs, &tool, "id")[0]);
        assert!(mac[8].starts_with("a\"b\\c<b>&x</b>[2Jy"), "{}", mac[8]);
    }

    #[test]
    fn a_notifier_that_is_missing_or_fails_is_an_error() {
        let argv = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
        let missing = show(&[argv(&["toolwarden-no-such-notifier"])]).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("none of toolwarden-no-such-notifier"),
            "{missing}"
        );
        // The next one is tried when the first is not installed.
        assert!(show(&[argv(&["toolwarden-no-such-notifier"]), argv(&["true"])]).is_ok());
        let failed = show(&[argv(&["false"])]).unwrap_err();
        assert!(failed.to_string().contains("ended with"), "{failed}");
    }
}
