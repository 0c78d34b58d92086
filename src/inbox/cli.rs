//! `toolwarden approvals list|approve|deny|watch` (and `serve`, in
//! `page`): a person's side of the inbox.

use std::time::Duration;

use super::{approver, now_ms, Inbox, Pending, Refused, Status};
use crate::cli::{ApprovalsCommand, StoreArgs};
use crate::redact::{loggable, peer_line};
use crate::state::{self, Spec};

/// Runs one command: what to print, and the exit code (0; 1 for a
/// decision not taken or a store that cannot be read; 2 for a store that
/// does not open).
pub fn run(command: &ApprovalsCommand) -> (String, u8) {
    let store = match command {
        ApprovalsCommand::Serve(args) => return super::page::run(args),
        ApprovalsCommand::List { store, .. }
        | ApprovalsCommand::Approve { store, .. }
        | ApprovalsCommand::Deny { store, .. }
        | ApprovalsCommand::Watch { store } => store,
    };
    let spec = match open_spec(store) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return (String::new(), 2);
        }
    };
    if let ApprovalsCommand::Watch { .. } = command {
        return (String::new(), super::watch::run(&spec));
    }
    // A database that does not exist holds no approvals: say so, and
    // create nothing.
    if let Spec::Sqlite(path) = &spec {
        if !path.exists() {
            return match command {
                ApprovalsCommand::List { json: true, .. } => ("[]\n".into(), 0),
                ApprovalsCommand::List { .. } => (
                    format!(
                        "No calls are waiting for approval ({} does not exist yet).\n",
                        path.display()
                    ),
                    0,
                ),
                _ => {
                    eprintln!(
                        "toolwarden: no approval has this id: {} does not exist yet",
                        path.display()
                    );
                    (String::new(), 1)
                }
            };
        }
    }
    let inbox = match Inbox::open(&spec) {
        Ok(Inbox::Unavailable(why)) => {
            eprintln!("toolwarden: {spec}: {why}");
            return (String::new(), 2);
        }
        Ok(inbox) => inbox,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return (String::new(), 2);
        }
    };
    let now = now_ms();
    match command {
        ApprovalsCommand::List { json, all, .. } => match inbox.listing(now, *all) {
            Ok(found) => {
                for id in &found.unreadable {
                    eprintln!("toolwarden: {}: {}", loggable(id), Refused::Unreadable);
                }
                let list = found.calls;
                if *json {
                    let text = serde_json::to_string_pretty(&list).unwrap_or_default();
                    (text + "\n", 0)
                } else {
                    (listing(&list, now), 0)
                }
            }
            Err(e) => {
                eprintln!("toolwarden: {spec}: {}", e.0);
                (String::new(), 1)
            }
        },
        ApprovalsCommand::Approve { id, .. } => decide(&inbox, &spec, id, true, None, now),
        ApprovalsCommand::Deny { id, reason, .. } => {
            decide(&inbox, &spec, id, false, reason.as_deref(), now)
        }
        ApprovalsCommand::Serve(_) => unreachable!("served above"),
        ApprovalsCommand::Watch { .. } => unreachable!("watched above"),
    }
}

/// Where the approvals of `--state`'s store are (`state.db` beside an
/// LMDB map of counters).
fn open_spec(store: &StoreArgs) -> anyhow::Result<Spec> {
    state::spec(store.state.as_deref()).map(|spec| spec.inbox())
}

/// A person's decision, as `approve` and `deny` (and `watch`) take it:
/// what to print, and the exit code; a refusal is said on stderr.
pub(super) fn decide(
    inbox: &Inbox,
    spec: &Spec,
    id: &str,
    approve: bool,
    reason: Option<&str>,
    now: u64,
) -> (String, u8) {
    match inbox.decide(id, approve, &approver(), reason, now) {
        Ok(Ok(pending)) => {
            let done = if approve {
                "approved: the session holding it forwards it, or the agent's next try of the same call does"
            } else {
                "denied: the agent is told so"
            };
            let tool = loggable(&pending.tool);
            (format!("{} `{tool}`: {done}.\n", pending.id), 0)
        }
        Ok(Err(refused)) => {
            eprintln!("toolwarden: {}: {refused}", loggable(id));
            (String::new(), 1)
        }
        Err(e) => {
            eprintln!("toolwarden: {spec}: {}", e.0);
            (String::new(), 1)
        }
    }
}

/// The terminal form: a few lines per call, with the commands that
/// decide it.
fn listing(list: &[Pending], now: u64) -> String {
    if list.is_empty() {
        return "No calls are waiting for approval.\n".into();
    }
    let mut out = String::new();
    for pending in list {
        out.push_str(&block(pending, now));
        if pending.status == Status::Pending && pending.expires_at > now {
            out.push_str(&format!(
                "    toolwarden approvals approve {0}  |  toolwarden approvals deny {0}\n",
                pending.id
            ));
        }
    }
    out
}

/// One call as a person sees it: the tool, where it comes from, when, and
/// its redacted arguments. What the agent or the server wrote is shown
/// with its control characters escaped, so that it cannot forge a line
/// (or a prompt) nor repaint the terminal.
pub(super) fn block(pending: &Pending, now: u64) -> String {
    let asked = ago(now.saturating_sub(pending.requested_at));
    let when = match pending.status {
        Status::Pending if pending.expires_at > now => format!(
            "asked {asked} ago, expires in {}",
            ago(pending.expires_at - now)
        ),
        Status::Pending => format!("asked {asked} ago, expired"),
        status => {
            let by = pending
                .decided_by
                .as_deref()
                .map(|b| format!(" by {}", loggable(b)))
                .unwrap_or_default();
            format!("asked {asked} ago, {}{by}", status_word(status))
        }
    };
    let arguments = serde_json::to_string(&pending.arguments).unwrap_or_default();
    format!(
        "{}  `{}`  (policy {}, identity {}), {when}\n    server:    {}\n    arguments: {}\n",
        loggable(&pending.id),
        loggable(&pending.tool),
        loggable(&pending.namespace),
        loggable(&pending.identity),
        peer_line(&pending.server),
        peer_line(&arguments),
    )
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Denied => "denied",
        Status::Redeemed => "approved and made",
    }
}

/// A duration as a person reads it: `12 s`, `9 min 48 s`, `2 h 5 min`.
pub(super) fn ago(ms: u64) -> String {
    let s = Duration::from_millis(ms).as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
