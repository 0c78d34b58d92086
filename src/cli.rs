//! The command line: clap types only, no IO.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Example (what goes into an MCP client's config):
  toolwarden --policy policies/runpod.json -- npx -y @runpod/mcp-server@4.0.0

toolwarden starts the server after `--` as its child and relays JSON-RPC
between the client (toolwarden's stdin/stdout) and the server. Every
tools/call is checked against the policy first; a refused call never reaches
the server and the agent gets a readable error result instead. A command
that is one http:// or https:// URL is a remote server, reached over
Streamable HTTP or HTTP+SSE:
  toolwarden --policy p.json --header 'Authorization: Bearer ${TOKEN}' -- https://host/mcp

Check a policy without running anything:
  toolwarden check policies/runpod.json";

#[derive(Debug, Parser)]
#[command(
    name = "toolwarden",
    version,
    about = "A policy layer for MCP servers (stdio or remote): allow/deny, rate limits and argument schemas for every tools/call",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and compile a policy, print what it does; with `-- CMD`, also
    /// start the server and compare the policy with the tools it lists.
    Check(CheckArgs),
    /// Show or reset the counters in a state store.
    #[command(subcommand)]
    State(StateCommand),
    /// Convert a policy of PolicyLayer's Intercept (YAML) into a toolwarden
    /// policy, written to stdout; anything it cannot convert faithfully
    /// stops it with the place and the reason.
    Import(ImportArgs),
    /// Run a policy's test cases (calls and the decision each should get)
    /// against a fresh in-memory state and a fake clock; exit 1 if any
    /// fails.
    Test(TestArgs),
    /// Write a first policy for a server from the tools it lists: reads
    /// allowed, destructive tools approved by a person, the rest limited,
    /// every call checked against the server's own inputSchema.
    Init(InitArgs),
    /// Put toolwarden in front of the stdio servers of an MCP client's
    /// config file (all of them, or those named).
    Wrap(WrapArgs),
    /// Take toolwarden away from the servers `wrap` wrapped.
    Unwrap(UnwrapArgs),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Summarize audit logs: calls, refusals, latency and approvals per
    /// tool; as a table, as JSON, or as a page with charts.
    Report(ReportArgs),
    /// Pin a server's tool definitions (--out), show what changed since
    /// (--diff), or take the changes in (--update).
    Pin(PinArgs),
    /// Calls waiting for a person's approval out of band: list them,
    /// approve or deny one, or watch them come.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Print a shell completion script for toolwarden.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print toolwarden's man page (roff).
    Man,
    /// Log in to a remote server with OAuth ahead of time (the browser
    /// opens, or the page to open is printed): sessions then use the
    /// tokens kept, and refresh them.
    Login {
        /// The server's MCP URL, as the session is given it.
        url: String,
        /// The OAuth client id to log in as (see the session's
        /// --oauth-client-id).
        #[arg(long, value_name = "ID")]
        oauth_client_id: Option<String>,
    },
    /// Forget the OAuth tokens kept for a remote server.
    Logout {
        /// The server's MCP URL.
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// The calls waiting for approval, oldest first.
    List {
        /// As a JSON array (one object per call).
        #[arg(long)]
        json: bool,
        /// Decided and expired ones too (kept for a day).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Approve one call: the session holding it forwards it, or the
    /// agent's next try of the same call does.
    Approve {
        /// The approval's id (`approvals list` shows it).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Refuse one call; the agent is told, with the reason.
    Deny {
        /// The approval's id (`approvals list` shows it).
        id: String,
        /// Why, for the agent and the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Serve a page on this machine that lists the calls waiting, with
    /// buttons that approve or deny them; prints its address first.
    Serve(ServeArgs),
    /// Show each call as it comes to wait, and decide it with one key:
    /// a (approve), d (deny, with a reason), s (skip), q (quit).
    Watch {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the page listens: a loopback IP and port (port 0: one the
    /// system picks).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Let --listen name an address other than loopback. The page has no
    /// TLS: anyone who can watch that network can read its token.
    #[arg(long)]
    pub allow_remote: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["out", "diff", "update"])))]
pub struct PinArgs {
    /// Write a new pin file (never over an existing one).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Show, tool by tool, what changed since FILE was written; exit 1 if
    /// anything did.
    #[arg(long, value_name = "FILE")]
    pub diff: Option<PathBuf>,
    /// Rewrite FILE with the server's tools as they are now.
    #[arg(long, value_name = "FILE")]
    pub update: Option<PathBuf>,
    #[command(flatten)]
    pub listing: ListArgs,
    /// The server command, after `--` or simply after the options.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chains of audit logs (several files: rotated ones, oldest
    /// first) and name every line changed, removed, inserted, moved or not
    /// whole; exit 1 if there is one.
    Verify {
        /// The audit logs, oldest first (audit.jsonl.1, then audit.jsonl).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The audit key the logs were written under (repeat for several).
        /// Default: the machine's, `audit.key` in the state directory.
        #[arg(long, value_name = "FILE")]
        key: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The audit logs, rotated ones too (audit.jsonl.1 audit.jsonl), in
    /// any order; `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Only events at or after WHEN: a duration back from now (24h, 7d)
    /// or an RFC 3339 time (2026-11-22T16:00:00Z).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<crate::commands::report::Since>,
    /// The same report as JSON (docs/observability.md describes it).
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page with charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WrapArgs {
    /// The client whose config file to edit.
    #[arg(value_enum)]
    pub client: crate::commands::wrap::Client,
    /// The policy the servers run under (it must load).
    #[arg(long, short = 'p', value_name = "FILE")]
    pub policy: PathBuf,
    /// The servers to wrap, by their names in the file. Default: every
    /// stdio server.
    #[arg(value_name = "SERVER")]
    pub servers: Vec<String>,
    /// Run them with --monitor (decide and log, refuse nothing).
    #[arg(long)]
    pub monitor: bool,
    /// Run them with --audit PATH.
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    /// Run them with --audit-required (no call while the log cannot be
    /// written).
    #[arg(long, requires = "audit")]
    pub audit_required: bool,
    /// Run them with --pin FILE (the file must load).
    #[arg(long, value_name = "FILE")]
    pub pin: Option<PathBuf>,
    /// Run them with --no-reload: the policy is read once, so an agent
    /// that can write the policy file cannot loosen it mid-session.
    #[arg(long)]
    pub no_reload: bool,
    /// A server wrapped already keeps the toolwarden options these
    /// arguments do not give (--no-reload, --pin, ...); with this, it
    /// gets only these.
    #[arg(long)]
    pub replace_options: bool,
    #[command(flatten)]
    pub file: ConfigFile,
}

#[derive(Debug, Args)]
pub struct UnwrapArgs {
    /// The client whose config file to edit.
    #[arg(value_enum)]
    pub client: crate::commands::wrap::Client,
    /// The servers to unwrap. Default: every wrapped one.
    #[arg(value_name = "SERVER")]
    pub servers: Vec<String>,
    #[command(flatten)]
    pub file: ConfigFile,
}

#[derive(Debug, Args)]
pub struct ConfigFile {
    /// The config file. Default: the client's own (Claude Desktop's
    /// claude_desktop_config.json, ~/.claude.json, ~/.cursor/mcp.json,
    /// .vscode/mcp.json, ~/.codeium/windsurf/mcp_config.json,
    /// ~/.codex/config.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write the policy here (never over an existing file) instead of to
    /// stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write a pin file of the same tools (see `toolwarden pin`).
    #[arg(long, value_name = "FILE")]
    pub pin: Option<PathBuf>,
    #[command(flatten)]
    pub listing: ListArgs,
    /// The server command, after `--` or simply after the options.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy.
    pub policy: PathBuf,
    /// The cases: {"cases": [{"name", "tool", "arguments", "identity",
    /// "repeat", "after", "expect"}]}.
    pub cases: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The Intercept policy (YAML).
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every bucket in the store: its counter, scope, and what is left.
    Show(StoreArgs),
    /// Empties a counter's buckets (all of them, or one identity's).
    Reset {
        /// The counter's name.
        counter: String,
        /// Only this identity's buckets (scope "grant").
        #[arg(long, value_name = "NAME")]
        identity: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The state store: memory, sqlite:PATH (or a path), redis://HOST:PORT[/DB],
    /// rediss://... (TLS) or redis+unix:///PATH. Default: an SQLite database in
    /// $XDG_STATE_HOME/toolwarden (~/.local/state/toolwarden).
    #[arg(long, value_name = "SPEC", env = "TOOLWARDEN_STATE")]
    pub state: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy file (JSON, format version 1).
    #[arg(
        long,
        short = 'p',
        value_name = "FILE",
        env = "TOOLWARDEN_POLICY",
        required = true
    )]
    pub policy: Option<PathBuf>,

    /// Who is calling, for limits with scope "grant".
    #[arg(
        long,
        value_name = "NAME",
        env = "TOOLWARDEN_IDENTITY",
        default_value = "default"
    )]
    pub identity: String,

    /// Log level on stderr: error, warn (the default: problems and refused
    /// calls), info (a line per call too), debug or trace. RUST_LOG, when
    /// set, takes precedence.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "warn",
        value_parser = ["error", "warn", "info", "debug", "trace"]
    )]
    pub log_level: String,

    /// Longest message accepted from either side, in bytes; a longer line
    /// is discarded and answered with an error.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// After the client closes its input, how long the server may take to
    /// exit by itself before SIGTERM (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// How long the server may take to exit after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub term_timeout: Duration,

    /// Write an audit log here (JSON Lines, appended; `-` for stderr, where
    /// the server's stderr lines then start with `[server] `). The file is
    /// created readable by its owner only.
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,

    /// Refuse every tools/call while the audit log cannot be written.
    #[arg(long, requires = "audit")]
    pub audit_required: bool,

    /// Export traces and metrics over OTLP/HTTP to this base URL (e.g.
    /// http://localhost:4318); short for OTEL_EXPORTER_OTLP_ENDPOINT
    /// (docs/observability.md).
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Keeps this policy's counters apart from other policies' in a shared
    /// store. Default: the policy file's name without its extension
    /// (`runpod` for runpod.json), so the same policy on two machines
    /// shares its budgets, and an edit keeps every counter it leaves alone.
    #[arg(
        long,
        value_name = "NAME",
        env = "TOOLWARDEN_STATE_NAMESPACE",
        value_parser = namespace_name
    )]
    pub state_namespace: Option<String>,

    /// A pin file (`toolwarden pin --out`): tools whose definitions differ
    /// from their pins, or that it does not know, are withheld from
    /// tools/list and their calls refused.
    #[arg(long, value_name = "FILE")]
    pub pin: Option<PathBuf>,

    /// Read the policy once: changes to the file need a restart.
    #[arg(long)]
    pub no_reload: bool,

    /// Decide, log and audit every call ("enforced": false) but refuse
    /// none: a dry run of a new policy. Counters are kept apart from the
    /// enforcing ones (namespace NAME/monitor, NAME the namespace).
    #[arg(long)]
    pub monitor: bool,

    /// How long a person has to approve a call: a prompt in the client is
    /// withdrawn then, and an approval in the inbox expires.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub approval_timeout: Duration,

    /// Where a person is asked to approve a call: auto (in the client when
    /// it can ask, else in the inbox), client (in the client only), or
    /// inbox (always in the inbox: `toolwarden approvals`).
    #[arg(long, value_name = "WHERE", default_value = "auto", value_enum)]
    pub approval: crate::session::approval::Channel,

    /// How long a call waiting in the inbox is held before the agent is
    /// told to make it again later (under the 60 s clients commonly allow
    /// a call).
    #[arg(long, value_name = "DURATION", default_value = "50s", value_parser = parse_duration)]
    pub approval_hold: Duration,

    /// Show no desktop notification when a call starts to wait in the
    /// inbox (one is shown where a D-Bus session bus is set, and on macOS).
    #[arg(long)]
    pub no_notify: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,

    /// The server command and its arguments, after `--` or simply after
    /// toolwarden's options (some clients drop the first `--`).
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file to check.
    pub policy: PathBuf,
    #[command(flatten)]
    pub listing: ListArgs,

    /// Optional: a server to start, list the tools of, and stop (after
    /// `--`, or simply after the policy).
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// How `check`, `init` and `pin` list a server's tools.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// How long the server gets to start and list its tools.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The capabilities to declare at initialize, as a JSON object, in
    /// place of the ones common clients declare (elicitation, sampling,
    /// roots): servers list some tools only to clients that can run them.
    #[arg(long, value_name = "JSON", value_parser = capabilities)]
    pub client_capabilities: Option<serde_json::Value>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// How to reach a server whose command is an `http://` or `https://` URL.
#[derive(Debug, Clone, Default, Args)]
pub struct RemoteArgs {
    /// A header on every request to a remote server (repeatable);
    /// `${VAR}` in the value is read from the environment at start. Values
    /// appear in no log, audit line or error.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A remote server's transport: auto (Streamable HTTP, falling back
    /// to HTTP+SSE as the spec describes), streamable-http, or sse (the
    /// legacy HTTP+SSE of 2024-11-05).
    #[arg(long, value_name = "TRANSPORT", default_value = "auto", value_enum)]
    pub transport: crate::upstream::remote::Transport,
    /// The OAuth client id to log in as, registered with the server's
    /// authorization server beforehand (a loopback redirect
    /// `http://127.0.0.1/callback`, any port); without it, toolwarden
    /// registers itself.
    #[arg(long, value_name = "ID")]
    pub oauth_client_id: Option<String>,
}

/// A JSON object, for `--client-capabilities`.
fn capabilities(text: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err("not a JSON object such as {\"roots\": {}}".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// "5s", "500ms", "2m" or a bare number of seconds ("1.5").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 5s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a duration"))
}

/// A `--state-namespace`: any name without a `/`, which is monitoring's
/// (`NAME/monitor`), so that no name given can be monitoring's.
fn namespace_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains('/') {
        return Err("a namespace is a name without `/` (monitoring counts in NAME/monitor)".into());
    }
    Ok(text.to_owned())
}

/// A first server word that starts with `-` but came before any `--`: a
/// mistyped option of toolwarden's (`--monitr`), not a server to start.
/// `argv` is the whole command line, `command` the server command clap
/// took from it; the message names the closest option.
pub fn misplaced_option(argv: &[OsString], command: &[OsString]) -> Option<String> {
    let first = command.first()?.to_str()?;
    let dashes = |words: &[OsString]| words.iter().filter(|w| *w == "--").count();
    // clap takes the `--` that comes before the command: one more in the
    // command line than in the command means the command followed one.
    if !first.starts_with('-') || dashes(argv.get(1..).unwrap_or_default()) > dashes(command) {
        return None;
    }
    let name = first.split('=').next().unwrap_or(first);
    let options = <Cli as clap::CommandFactory>::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|long| format!("--{long}")))
        .collect::<Vec<_>>();
    let hint = closest(name, options.iter().map(String::as_str))
        .map(|o| format!("; did you mean {o}?"))
        .unwrap_or_default();
    Some(format!(
        "unknown option {name}{hint} (a server command that starts with `-` goes after `--`)"
    ))
}

/// A first word that is not a subcommand but is close to one (`chekc`),
/// when clap could not make sense of the command line.
pub fn mistyped_command(argv: &[OsString]) -> Option<String> {
    let first = argv.get(1)?.to_str()?;
    if first.starts_with('-') {
        return None;
    }
    let cli = <Cli as clap::CommandFactory>::command();
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    // A command's own bad arguments are clap's to explain.
    if names.contains(&first) {
        return None;
    }
    let name = closest(first, names.iter().copied())?;
    Some(format!("unknown command `{first}`; did you mean `{name}`?"))
}

/// The candidate nearest `word`, when it is near enough to be a typo: at
/// most two edits, and fewer than half the word.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edits(word, c), c))
        .filter(|&(d, c)| d > 0 && d <= 2 && d * 2 < c.len().max(word.len()))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, with a swap of two neighbours as one edit.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let change = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + change);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_and_option_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && !matches!(id, "help" | "version") {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        let mut cli = <Cli as clap::CommandFactory>::command();
        cli.build();
        walk(&cli, "toolwarden", &mut missing);
        assert_eq!(missing, Vec::<String>::new(), "without a help line");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_run_form_needs_no_subcommand() {
        let cli =
            Cli::try_parse_from(["toolwarden", "--policy", "p.json", "--", "server", "--flag"])
                .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(
            cli.run.command,
            vec![OsString::from("server"), OsString::from("--flag")]
        );
        assert!(Cli::try_parse_from(["toolwarden", "--policy", "p.json"]).is_err());
        // Without `--`, as clients that drop it pass it: the command and
        // every argument after it, options of its own included.
        for argv in [
            &[
                "toolwarden",
                "--policy",
                "p.json",
                "npx",
                "-y",
                "@runpod/mcp-server",
                "--",
                "x",
            ][..],
            &[
                "toolwarden",
                "--policy=p.json",
                "--",
                "npx",
                "-y",
                "@runpod/mcp-server",
                "--",
                "x",
            ],
            &[
                "toolwarden",
                "-p",
                "p.json",
                "--identity",
                "me",
                "npx",
                "-y",
                "@runpod/mcp-server",
                "--",
                "x",
            ],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(
                cli.run.command,
                ["npx", "-y", "@runpod/mcp-server", "--", "x"],
                "{argv:?}"
            );
            assert_eq!(
                cli.run.policy.as_deref(),
                Some(std::path::Path::new("p.json"))
            );
        }
        // toolwarden's options come before the command; after it they are
        // the server's.
        let cli = Cli::try_parse_from(["toolwarden", "-p", "p.json", "server", "--identity", "x"])
            .unwrap();
        assert_eq!(cli.run.command, ["server", "--identity", "x"]);
        assert_eq!(cli.run.identity, "default");
        let cli = Cli::try_parse_from(["toolwarden", "check", "p.json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Check(_))));
    }

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn a_mistyped_option_before_the_command_is_named() {
        let argv = words("toolwarden --policy p.json --monitr -- srv");
        assert_eq!(
            misplaced_option(&argv, &words("--monitr -- srv")).as_deref(),
            Some(
                "unknown option --monitr; did you mean --monitor? \
                 (a server command that starts with `-` goes after `--`)"
            )
        );
        // After `--`, a word with a dash is the server's.
        let argv = words("toolwarden --policy p.json -- --weird-server");
        assert_eq!(misplaced_option(&argv, &words("--weird-server")), None);
        let argv = words("toolwarden --policy p.json npx -y srv");
        assert_eq!(misplaced_option(&argv, &words("npx -y srv")), None);
    }

    #[test]
    fn a_word_near_a_subcommand_is_taken_for_it() {
        let said = |line: &str| mistyped_command(&words(line));
        assert_eq!(
            said("toolwarden chekc p.json").as_deref(),
            Some("unknown command `chekc`; did you mean `check`?")
        );
        assert_eq!(
            said("toolwarden unrwap claude-code").as_deref(),
            Some("unknown command `unrwap`; did you mean `unwrap`?")
        );
        assert_eq!(said("toolwarden npx -y srv"), None);
        // `report` is two edits from `import`, and a command itself.
        assert_eq!(said("toolwarden report --since soon a.jsonl"), None);
        assert_eq!(said("toolwarden --policy p.json"), None);
    }
}
