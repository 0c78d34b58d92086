//! `toolwarden check POLICY [-- CMD...]`: load and compile a policy and say
//! what it does; with a server command, also start the server, list its
//! tools, and say what the policy does to each, warning about rules that
//! match nothing and (under default allow) tools no rule mentions.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use crate::wire::json::Raw;
use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::json;

use crate::cli::{CheckArgs, ListArgs};
use crate::policy::{self, Action, DefaultAction, Glob, Policy};
use crate::redact::loggable;
use crate::session::blocking::{self, Fd};
use crate::upstream::{self, Upstream};
use crate::wire::framing::{Frame, LineReader, LineWriter};
use crate::wire::jsonrpc::{self, Message, Strictness};

/// What `check`, `init` and `pin` declare at initialize unless
/// `--client-capabilities` says otherwise: what common clients (VS Code,
/// Claude Code, the SDKs' example clients) declare by default. Servers list
/// some tools only to clients that can run them (server-everything lists
/// its sampling, elicitation and roots tools only then), and pins taken
/// without them would withhold those tools from the real client.
pub const CLIENT_CAPABILITIES: &str =
    r#"{"elicitation":{"form":{}},"roots":{"listChanged":true},"sampling":{}}"#;

/// How long a silent server is waited for before saying so on stderr.
const QUIET: Duration = Duration::from_secs(1);

/// The report for stdout (nothing relays here) and the exit code: 0 the
/// policy loads, 2 it does not, 1 the server's tools could not be listed.
/// Errors go to stderr.
pub fn run(args: &CheckArgs) -> (String, u8) {
    let policy = match policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return (String::new(), 2);
        }
    };
    let mut out = format!("{}: ok\n", args.policy.display());
    out.push_str(&policy.summary());
    out.push_str(&approval(&policy));
    if args.command.is_empty() {
        return (out, 0);
    }
    let tools = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(list_tools(&args.command, &args.listing)));
    match tools {
        Ok(tools) => {
            let tools: Vec<String> = tools.into_iter().map(|t| t.name).collect();
            out.push_str(&compare(&policy, &tools));
            (out, 0)
        }
        Err(e) => {
            eprintln!("toolwarden: cannot list the server's tools: {e:#}");
            (out, 1)
        }
    }
}

/// How a person is asked about the calls of rules that approve (nothing
/// when no rule does): where a session will ask depends on the client and
/// on `--approval`, which `check` does not know.
pub fn approval(policy: &Policy) -> String {
    if !policy.rules().iter().any(|r| r.action == Action::Approve) {
        return String::new();
    }
    "approval: a person is asked in the client when it declares elicitation, else in the \
     inbox (`toolwarden approvals`); a session's --approval client or inbox picks one\n"
        .into()
}

/// What the policy does to each of the server's tools, and what looks like
/// a mistake.
pub fn compare(policy: &Policy, tools: &[String]) -> String {
    // The server names its tools: shown escaped, so that a name cannot
    // forge a line of the report or repaint the terminal.
    let shown: Vec<String> = tools.iter().map(|t| loggable(t)).collect();
    let mut out = String::new();
    let (mut allowed, mut approve, mut denied, mut hidden) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    for (tool, name) in tools.iter().zip(&shown) {
        match policy.action(tool) {
            Action::Allow => allowed.push(name.as_str()),
            Action::Approve => approve.push(name.as_str()),
            Action::Deny => denied.push(name.as_str()),
        }
        if policy.hides(tool) {
            hidden += 1;
        }
    }
    let _ = writeln!(
        out,
        "server tools ({}): {} allowed, {} need approval, {} denied, {hidden} hidden from tools/list",
        tools.len(),
        allowed.len(),
        approve.len(),
        denied.len()
    );
    for (label, names) in [
        ("allowed", &allowed),
        ("need approval", &approve),
        ("denied", &denied),
    ] {
        if !names.is_empty() {
            let _ = writeln!(out, "  {label}: {}", names.join(", "));
        }
    }
    for rule in policy.rules() {
        let glob = Glob::new(&rule.pattern);
        if !tools.iter().any(|t| glob.matches(t)) {
            let _ = writeln!(
                out,
                "warning: the rule {:?} matches none of the server's tools",
                rule.pattern
            );
        }
    }
    // A deny glob that a more specific allow glob overrides for a tool the
    // server has: `delete_*` denied, `delete_tmp*` allowed, and
    // `delete_tmp_and_db` runs. The catch-all `*` is left out: allowing
    // some tools past it is what it is for.
    for tool in tools {
        let Some(applies) = policy.rule_for(tool) else {
            continue;
        };
        if applies.action == Action::Deny || !applies.pattern.contains('*') {
            continue;
        }
        for rule in policy.rules() {
            if rule.action == Action::Deny
                && rule.pattern != "*"
                && rule.pattern.contains('*')
                && Glob::new(&rule.pattern).matches(tool)
            {
                let _ = writeln!(
                    out,
                    "warning: the deny rule {:?} does not apply to {tool:?}: the more specific rule {:?} allows it",
                    rule.pattern, applies.pattern
                );
            }
        }
    }
    if policy.default == DefaultAction::Allow {
        let unnamed: Vec<&str> = tools
            .iter()
            .zip(&shown)
            .filter(|(t, _)| policy.rule_for(t).is_none())
            .map(|(_, name)| name.as_str())
            .collect();
        if !unnamed.is_empty() {
            let _ = writeln!(
                out,
                "warning: the default is allow and no rule names these tools: {}",
                unnamed.join(", ")
            );
        }
    }
    out
}

/// The server's tools, listed once (`init` and `pin`), and its command
/// line as it may be shown and stored (its secrets redacted); or, said on
/// stderr why not, exit code 1.
pub(crate) fn server_tools(
    command: &[OsString],
    listing: &ListArgs,
) -> Result<(Vec<Tool>, String), u8> {
    let tools = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(list_tools(command, listing)));
    let server: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match tools {
        Ok(tools) => Ok((tools, crate::redact::command(&server))),
        Err(e) => {
            eprintln!("toolwarden: cannot list the server's tools: {e:#}");
            Err(1)
        }
    }
}

/// The longest line read from the server.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Starts the server, initializes a session declaring the capabilities of
/// `listing` (or [`CLIENT_CAPABILITIES`]), lists every page of tools, and
/// stops the server. A server silent for a second is said to be waited
/// for, on stderr.
pub async fn list_tools(command: &[OsString], listing: &ListArgs) -> anyhow::Result<Vec<Tool>> {
    let capabilities = listing
        .client_capabilities
        .clone()
        .unwrap_or_else(|| serde_json::from_str(CLIENT_CAPABILITIES).expect("valid JSON"));
    let limit = listing.timeout;
    let options = upstream::Options {
        stderr: upstream::ServerStderr::Inherit,
        remote: &listing.remote,
        max_message: MAX_MESSAGE,
    };
    let (mut server, pipes) = Upstream::start(command, &options).map_err(|e| anyhow!(e.message))?;
    let listing = blocking::spawn("check-list", move || {
        list_over(
            LineWriter::new(pipes.to_server),
            LineReader::new(pipes.from_server, MAX_MESSAGE),
            &capabilities,
        )
    });
    let tools = match listing {
        Ok(listing) => match wait_saying_so(limit, listing).await {
            Some(Ok(tools)) => tools,
            Some(Err(_)) => Err(anyhow!("listing the tools stopped")),
            None => Err(anyhow!(
                "the server did not list its tools within {} (--timeout gives it longer)",
                humantime::format_duration(limit)
            )),
        },
        Err(e) => Err(anyhow!("cannot talk to the server: {e}")),
    };
    let _ = server
        .stop(Duration::from_secs(2), Duration::from_secs(2))
        .await;
    // A remote server's end says why in words (a child's stderr is on
    // toolwarden's already).
    let tools = match (
        tools,
        upstream::is_remote(command),
        server.last_words().last(),
    ) {
        (Err(e), Some(_), Some(why)) => Err(anyhow!("{e:#} ({why})")),
        (tools, _, _) => tools,
    };
    server.finished();
    tools
}

/// `listing` within `limit` (`None` past it), with a line on stderr once
/// it has taken [`QUIET`].
async fn wait_saying_so<T>(limit: Duration, listing: impl Future<Output = T>) -> Option<T> {
    let listing = tokio::time::timeout(limit, listing);
    tokio::pin!(listing);
    tokio::select! {
        done = &mut listing => return done.ok(),
        () = tokio::time::sleep(QUIET.min(limit)) => {}
    }
    eprintln!(
        "toolwarden: waiting for the server's tools/list (up to {}; --timeout changes it)…",
        humantime::format_duration(limit)
    );
    listing.await.ok()
}

/// The listing itself, over the server's pipes. Returning closes the
/// server's stdin, which is the first step of its stop, and leaves its
/// output read by a thread of its own.
fn list_over(
    mut to_server: LineWriter<Fd>,
    mut from_server: LineReader<Fd>,
    capabilities: &serde_json::Value,
) -> anyhow::Result<Vec<Tool>> {
    let init = json!({
        "jsonrpc": "2.0", "id": "check-init", "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": capabilities,
            "clientInfo": { "name": "toolwarden check", "version": env!("CARGO_PKG_VERSION") }
        }
    });
    to_server.send(init.to_string().as_bytes())?;
    answer_of(&mut from_server, &mut to_server, "check-init")?;
    to_server.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let id = format!("check-list-{page}");
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let request =
            json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params });
        to_server.send(request.to_string().as_bytes())?;
        let result = answer_of(&mut from_server, &mut to_server, &id)?;
        let page: ToolsPage =
            serde_json::from_str(result.get()).context("the tools/list answer is malformed")?;
        tools.extend(page.tools);
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => break,
        }
    }
    // The server's output is read to its end: a server that writes after
    // its stdin closed (server-everything asks for the roots a moment
    // after initialize) would otherwise die of a broken pipe, loudly.
    drop(to_server);
    let _ = blocking::spawn("check-drain", move || {
        while let Ok(Some(_)) = from_server.next_frame() {}
    });
    Ok(tools)
}

#[derive(Deserialize)]
struct ToolsPage {
    tools: Vec<Tool>,
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// A tool as the server lists it: its name, and the rest of its
/// definition as sent.
#[derive(Debug, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(flatten)]
    pub definition: serde_json::Map<String, serde_json::Value>,
}

/// Reads until the answer to `id`; the server's own requests are answered
/// so that it does not wait on them: `ping`, `roots/list` with no roots,
/// anything else (sampling, elicitation) with "method not found".
fn answer_of(
    from_server: &mut LineReader<Fd>,
    to_server: &mut LineWriter<Fd>,
    id: &str,
) -> anyhow::Result<Box<serde_json::value::RawValue>> {
    loop {
        let Some(frame) = from_server.next_frame()? else {
            bail!("the server closed its output");
        };
        let Frame::Line(line) = frame else { continue };
        let reply = match jsonrpc::parse(line, Strictness::Envelope) {
            Ok(Message::Response { id: got, result }) if got.as_str().as_deref() == Some(id) => {
                return result.map(Raw::to_raw_value).ok_or_else(|| {
                    anyhow!(
                        "the server answered {id} with an error: {}",
                        String::from_utf8_lossy(line)
                    )
                });
            }
            Ok(Message::Request {
                id: theirs, method, ..
            }) => match method.as_ref() {
                "ping" => jsonrpc::result_response(theirs, "{}"),
                "roots/list" => jsonrpc::result_response(theirs, r#"{"roots":[]}"#),
                _ => jsonrpc::error_response(
                    Some(theirs),
                    -32601,
                    "toolwarden check answers no requests",
                ),
            },
            _ => continue,
        };
        to_server.send(&reply)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_how_approvals_are_asked_when_a_rule_asks_for_them() {
        let approve = Policy::from_json(
            r#"{"version":"1","tools":{"deploy":{"action":"approve"},"read":{}}}"#,
        )
        .unwrap();
        assert_eq!(
            approval(&approve),
            "approval: a person is asked in the client when it declares elicitation, else in the inbox (`toolwarden approvals`); a session's --approval client or inbox picks one\n"
        );
        let none = Policy::from_json(r#"{"version":"1","tools":{"read":{}}}"#).unwrap();
        assert_eq!(approval(&none), "");
    }
}
