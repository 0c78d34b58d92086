//! `toolwarden wrap CLIENT --policy FILE [SERVER...]` and `toolwarden
//! unwrap CLIENT [SERVER...]`: put toolwarden in front of the stdio servers
//! of an MCP client's config file, and take it away again.
//!
//! A wrapped server's command is toolwarden (absolute path) and its
//! arguments are `--policy POLICY -- ORIGINAL-COMMAND ORIGINAL-ARGS...`, so
//! unwrapping reads the original back from the arguments. Everything else
//! in the file stays as it was: JSON files are edited by splicing the two
//! values in place (every other byte is kept, comments and trailing commas
//! included), Codex's TOML through `toml_edit` (comments and layout kept). A file that does not parse is
//! never touched; a changed file is written whole (a new file renamed over
//! the old one) after a copy of the old one is kept beside it (see
//! [`write_with_backup`] for links, modes and a client writing meanwhile).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use crate::cli::{ConfigFile, WrapArgs};
use crate::wire::json::{self, Raw};

mod remote;

/// `toolwarden wrap`: what changed, and the exit code (0 done or nothing
/// to do, 2 for a policy or pin file that does not load, or a config file
/// that cannot be read, parsed or written).
pub fn run(args: &WrapArgs) -> (String, u8) {
    match wrap_change(args) {
        Ok(change) => edit_config(args.client, &args.servers, &args.file, &change),
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            (String::new(), 2)
        }
    }
}

/// What `wrap` puts in front: this binary and the policy, by absolute
/// paths, once the policy is known to load.
fn wrap_change(args: &WrapArgs) -> anyhow::Result<Change> {
    crate::policy::load(&args.policy)?;
    let policy = std::fs::canonicalize(&args.policy)?;
    let toolwarden = std::env::current_exe()?.canonicalize()?;
    let mut options = Vec::new();
    if args.monitor {
        options.push("--monitor".to_owned());
    }
    if let Some(audit) = &args.audit {
        options.push("--audit".to_owned());
        options.push(std::path::absolute(audit)?.to_string_lossy().into_owned());
    }
    if args.audit_required {
        options.push("--audit-required".to_owned());
    }
    if let Some(pin) = &args.pin {
        crate::commands::pin::Pins::load(pin, &[])?;
        options.push("--pin".to_owned());
        options.push(std::fs::canonicalize(pin)?.to_string_lossy().into_owned());
    }
    if args.no_reload {
        options.push("--no-reload".to_owned());
    }
    Ok(Change::Wrap {
        toolwarden: toolwarden.to_string_lossy().into_owned(),
        policy: policy.to_string_lossy().into_owned(),
        options,
        replace_options: args.replace_options,
    })
}

/// `wrap` and `unwrap`: the client's config file (`file`, or the
/// client's own) edited by `change`; what changed, and 0, or 2 for a file
/// that cannot be read, parsed or written (what was said of it before the
/// write failed is still printed).
pub(crate) fn edit_config(
    client: Client,
    servers: &[String],
    file: &ConfigFile,
    change: &Change,
) -> (String, u8) {
    let mut out = String::new();
    let result = (|| -> anyhow::Result<()> {
        let path = match &file.config {
            Some(path) => path.clone(),
            None => client.default_config()?,
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let (new, done) = edit(client, &text, servers, change)
            .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
        out.push_str(&report(&done, file.dry_run));
        match new {
            None => out.push_str(&format!("{}: nothing to change\n", path.display())),
            Some(_) if file.dry_run => {
                out.push_str(&format!("{}: not written (--dry-run)\n", path.display()))
            }
            Some(new) => {
                let backup = write_with_backup(&path, &text, &new)?;
                out.push_str(&format!(
                    "{}: written; the previous file is kept as {}\n",
                    path.display(),
                    backup.display()
                ));
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => (out, 0),
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            (out, 2)
        }
    }
}

/// The clients toolwarden knows the config files of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    Vscode,
    Windsurf,
    Codex,
}

impl Client {
    /// The config file the client reads by default.
    pub fn default_config(self) -> anyhow::Result<PathBuf> {
        self.default_config_on(std::env::consts::OS, |name| std::env::var_os(name))
    }

    /// [`Client::default_config`] on the system `os` (as
    /// `std::env::consts::OS` names it), with the environment `var`.
    fn default_config_on(
        self,
        os: &str,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> anyhow::Result<PathBuf> {
        if self == Client::ClaudeDesktop && os == "windows" {
            let appdata = var("APPDATA")
                .ok_or_else(|| anyhow!("APPDATA is not set: name the file with --config"))?;
            return Ok(PathBuf::from(appdata)
                .join("Claude")
                .join("claude_desktop_config.json"));
        }
        let home = var("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("HOME is not set: name the file with --config"))?;
        Ok(match self {
            Client::ClaudeDesktop if os == "macos" => {
                home.join("Library/Application Support/Claude/claude_desktop_config.json")
            }
            Client::ClaudeDesktop => var("XDG_CONFIG_HOME")
                .map_or_else(|| home.join(".config"), PathBuf::from)
                .join("Claude/claude_desktop_config.json"),
            // The user's servers; a project's `.mcp.json` is named with
            // --config.
            Client::ClaudeCode => home.join(".claude.json"),
            Client::Cursor => home.join(".cursor/mcp.json"),
            // The workspace's file, from the workspace's directory.
            Client::Vscode => PathBuf::from(".vscode/mcp.json"),
            Client::Windsurf => home.join(".codeium/windsurf/mcp_config.json"),
            Client::Codex => var("CODEX_HOME")
                .map_or_else(|| home.join(".codex"), PathBuf::from)
                .join("config.toml"),
        })
    }

    /// The key that holds the servers, for the JSON formats.
    fn servers_key(self) -> &'static str {
        match self {
            Client::Vscode => "servers",
            _ => "mcpServers",
        }
    }
}

/// One server's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub command: String,
    pub args: Vec<String>,
}

impl CommandLine {
    /// The command as a shell line, with what looks secret in it hidden
    /// (configs carry API keys in their arguments).
    fn shown(&self) -> String {
        let words: Vec<&String> = std::iter::once(&self.command).chain(&self.args).collect();
        crate::redact::command(&words)
    }
}

/// What to do to each server.
pub enum Change {
    /// Put toolwarden with this policy (absolute paths), and these other
    /// options of its own, in front. A server wrapped already keeps the
    /// options of its own that `options` does not give, unless
    /// `replace_options`.
    Wrap {
        toolwarden: String,
        policy: String,
        options: Vec<String>,
        replace_options: bool,
    },
    Unwrap,
}

/// The new text of a config file (`None`: nothing changed), and what
/// happened to each server, by name.
pub type Edited = (Option<String>, Vec<(String, Done)>);

/// What happened to one server, for the report.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    Changed {
        from: CommandLine,
        to: CommandLine,
    },
    Unchanged(&'static str),
    Skipped(String),
    /// Options of the existing wrapping kept (reported before the change).
    Kept(Vec<String>),
}

/// Whether `line` runs toolwarden in front of a server, and if so the
/// server's own command line (what follows `--`).
fn wrapped_server(line: &CommandLine, toolwarden: Option<&str>) -> Option<CommandLine> {
    let is_toolwarden = toolwarden == Some(line.command.as_str())
        || Path::new(&line.command).file_name() == Some("toolwarden".as_ref());
    if !is_toolwarden {
        return None;
    }
    let dash = line.args.iter().position(|a| a == "--")?;
    let (command, args) = line.args[dash + 1..].split_first()?;
    Some(CommandLine {
        command: command.clone(),
        args: args.to_vec(),
    })
}

/// toolwarden's options that take a value (the rest are flags), so that
/// an existing wrapping's arguments can be read back as options.
const VALUED: &[&str] = &[
    "--policy",
    "--identity",
    "--log-level",
    "--max-message-bytes",
    "--close-timeout",
    "--term-timeout",
    "--audit",
    "--state",
    "--state-namespace",
    "--pin",
    "--approval-timeout",
    "--approval",
    "--approval-hold",
    "--header",
    "--transport",
];

/// Options that say how to reach a remote server: part of the server, not
/// of the wrapping, so a new wrapping keeps them whatever it is given.
const SERVER_OPTIONS: [&str; 2] = ["--header", "--transport"];

/// toolwarden's own arguments (those before `--`) as options, each with
/// its value: `[["--pin", "/p"], ["--no-reload"], ["--identity=me"]]`.
fn options_of(args: &[String]) -> Vec<Vec<String>> {
    let mut options: Vec<Vec<String>> = Vec::new();
    let mut args = args.iter().take_while(|a| *a != "--");
    while let Some(arg) = args.next() {
        let mut option = vec![arg.clone()];
        let name = if arg == "-p" { "--policy" } else { arg };
        if VALUED.contains(&name) {
            option.extend(args.next().cloned());
        }
        options.push(option);
    }
    options
}

/// An option's name: `--pin` for `--pin`, `--pin=/p` and `-p` alike.
fn option_name(option: &[String]) -> &str {
    match option[0].as_str() {
        "-p" => "--policy",
        arg => arg.split_once('=').map_or(arg, |(name, _)| name),
    }
}

/// The new command line of one server, or why it stays; `kept` gets the
/// options of an existing wrapping that are kept.
fn change_of(
    line: &CommandLine,
    change: &Change,
    kept: &mut Vec<String>,
) -> Result<CommandLine, Done> {
    match change {
        Change::Wrap {
            toolwarden,
            policy,
            options,
            replace_options,
        } => {
            let (server, existing) = match wrapped_server(line, Some(toolwarden)) {
                Some(server) => (server, options_of(&line.args)),
                None => (line.clone(), Vec::new()),
            };
            let mut given = options_of(options);
            // The existing options in their places, each replaced by the
            // given one of its name; then the given ones left.
            let mut merged: Vec<Vec<String>> = Vec::new();
            for option in existing {
                let name = option_name(&option);
                if name == "--policy" {
                    continue;
                }
                if SERVER_OPTIONS.contains(&name) {
                    merged.push(option);
                    continue;
                }
                match given.iter().position(|g| option_name(g) == name) {
                    Some(at) => merged.push(given.remove(at)),
                    None if *replace_options => {}
                    None => {
                        kept.extend(option.iter().cloned());
                        merged.push(option);
                    }
                }
            }
            merged.extend(given);
            let mut args = vec!["--policy".to_owned(), policy.clone()];
            args.extend(merged.into_iter().flatten());
            args.push("--".to_owned());
            args.push(server.command);
            args.extend(server.args);
            let to = CommandLine {
                command: toolwarden.clone(),
                args,
            };
            if &to == line {
                Err(Done::Unchanged(
                    "already wrapped with this policy and options",
                ))
            } else {
                Ok(to)
            }
        }
        Change::Unwrap => {
            wrapped_server(line, None).ok_or(Done::Unchanged("not wrapped by toolwarden"))
        }
    }
}

/// Applies `change` to the servers `names` (all when empty) of `client`'s
/// config `text`: the new text (None when nothing changed) and what
/// happened to each server, by name.
pub fn edit(
    client: Client,
    text: &str,
    names: &[String],
    change: &Change,
) -> anyhow::Result<Edited> {
    match client {
        Client::Codex => edit_toml(text, names, change),
        _ => edit_json(client, text, names, change),
    }
}

fn check_names<'a>(
    names: &[String],
    found: impl Iterator<Item = &'a str> + Clone,
) -> anyhow::Result<()> {
    for name in names {
        if !found.clone().any(|f| f == name) {
            let all: Vec<&str> = found.clone().collect();
            bail!(
                "no server {name:?} in the file (it has: {})",
                all.join(", ")
            );
        }
    }
    Ok(())
}

/// JSON with comments (`//`, `/* */`) and trailing commas, as VS Code's
/// and Cursor's files may have them, as plain JSON of the same length:
/// each byte of a comment or of a trailing comma becomes a space (line
/// breaks stay), so that every place in one is the same place in the other
/// and the splices found in plain JSON apply to the text with comments.
/// An unterminated comment is left as it is, for validation to refuse.
fn blank_comments(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let blank = |bytes: &mut [u8], from: usize, to: usize| {
        for b in &mut bytes[from..to] {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    };
    // Comments first: a comment may hold a quote.
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'"', _) => i = string_end(&bytes, i),
            (b'/', Some(b'/')) => {
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |n| i + n);
                blank(&mut bytes, i, end);
                i = end;
            }
            (b'/', Some(b'*')) => {
                let Some(n) = bytes[i + 2..].windows(2).position(|w| w == b"*/") else {
                    break;
                };
                let end = i + 2 + n + 2;
                blank(&mut bytes, i, end);
                i = end;
            }
            _ => i += 1,
        }
    }
    // Then the commas that close nothing but a list or an object.
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(&bytes, i),
            b',' => {
                let next = bytes[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                if matches!(next, Some(b']' | b'}')) {
                    bytes[i] = b' ';
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced, each whole character of a comment
    // byte by byte: still UTF-8.
    String::from_utf8(bytes).expect("blanking keeps UTF-8")
}

/// Where the string that opens at `start` ends (after its closing quote).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn edit_json(
    client: Client,
    text: &str,
    names: &[String],
    change: &Change,
) -> anyhow::Result<Edited> {
    let key = client.servers_key();
    let original = text;
    let plain = blank_comments(text);
    let text = plain.as_str();
    json::validate(text.as_bytes(), json::Check::Strict).map_err(|e| {
        let (line, column) = e.line_column(text);
        anyhow!(
            "line {line}, column {column}: {} (the file is left as it is)",
            e.message()
        )
    })?;
    let root = Raw::parse(text)?;
    let servers = root
        .member(key)
        .filter(|s| s.is_object())
        .ok_or_else(|| anyhow!("no \"{key}\" object in the file"))?;
    let entries: Vec<(String, Raw<'_>)> = servers
        .members()
        .map(|(name, raw)| (name.into_owned(), raw))
        .collect();
    check_names(names, entries.iter().map(|(n, _)| n.as_str()))?;
    // Splices, as (start, end, replacement), applied back to front.
    let mut splices: Vec<(usize, usize, String)> = Vec::new();
    let mut report = Vec::new();
    for (name, entry) in &entries {
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        let value: Value = serde_json::from_str(entry.get())?;
        let command = value.get("command").and_then(Value::as_str);
        let Some(command) = command else {
            let done = match remote_of_json(name, &value)? {
                Some(remote) => match change {
                    Change::Wrap { .. } => {
                        let (line, to, env) = wrap_remote(&remote, change)?;
                        let new = json_entry_wrapped(*entry, &to, &env);
                        splices.push(span(text, *entry, new));
                        Done::Changed { from: line, to }
                    }
                    Change::Unwrap => Done::Unchanged("not wrapped by toolwarden"),
                },
                None => Done::Skipped("no \"command\" and no \"url\"".into()),
            };
            report.push((name.clone(), done));
            continue;
        };
        let args = match value.get("args") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| anyhow!("{name}: \"args\" holds something that is not a string"))?,
            Some(_) => bail!("{name}: \"args\" is not a list"),
        };
        let line = CommandLine {
            command: command.to_owned(),
            args,
        };
        if let (Change::Unwrap, Some(server)) = (change, wrapped_server(&line, None)) {
            let env = |var: &str| {
                value
                    .pointer(&format!("/env/{var}"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            if let Some((remote, used)) = remote::unwrapped(&line.args, &server, env) {
                let new = json_entry_unwrapped(client, *entry, &remote, &used);
                splices.push(span(text, *entry, new));
                let to = CommandLine {
                    command: remote.url.clone(),
                    args: Vec::new(),
                };
                report.push((name.clone(), Done::Changed { from: line, to }));
                continue;
            }
        }
        let mut kept = Vec::new();
        let outcome = change_of(&line, change, &mut kept);
        if !kept.is_empty() {
            report.push((name.clone(), Done::Kept(kept)));
        }
        let to = match outcome {
            Ok(to) => to,
            Err(done) => {
                report.push((name.clone(), done));
                continue;
            }
        };
        let command_raw = entry.member("command").expect("read above");
        splices.push(span(text, command_raw, serde_json::to_string(&to.command)?));
        let args_text = json_list(&to.args);
        match entry.member("args") {
            // Unwrapping a server that had no arguments before it was
            // wrapped takes the key away again.
            Some(raw) if to.args.is_empty() => {
                splices.push(member_removal(text, *entry, raw)?);
            }
            Some(raw) => splices.push(span(text, raw, args_text)),
            None if to.args.is_empty() => {}
            None => {
                let (_, end, _) = span(text, command_raw, String::new());
                splices.push((end, end, format!(", \"args\": {args_text}")));
            }
        }
        report.push((name.clone(), Done::Changed { from: line, to }));
    }
    if splices.is_empty() {
        return Ok((None, report));
    }
    splices.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    // The places found in the plain text are the same in the original,
    // whose comments stay.
    let mut out = original.to_owned();
    for (start, end, with) in splices {
        out.replace_range(start..end, &with);
    }
    Ok((Some(out), report))
}

/// A remote server entry (`url`, or Windsurf's `serverUrl`), with its
/// transport and headers; `None` for an entry without a URL.
fn remote_of_json(name: &str, value: &Value) -> anyhow::Result<Option<remote::Remote>> {
    let url = value.get("url").or_else(|| value.get("serverUrl"));
    let Some(url) = url else {
        return Ok(None);
    };
    let url = url
        .as_str()
        .filter(|u| remote::is_url(u))
        .ok_or_else(|| anyhow!("{name}: \"url\" is not an http:// or https:// URL"))?;
    let mut headers = Vec::new();
    if let Some(given) = value.get("headers") {
        let given = given
            .as_object()
            .ok_or_else(|| anyhow!("{name}: \"headers\" is not an object"))?;
        for (header, v) in given {
            let v = v
                .as_str()
                .ok_or_else(|| anyhow!("{name}: header {header:?} is not a string"))?;
            headers.push((header.clone(), v.to_owned()));
        }
    }
    Ok(Some(remote::Remote {
        url: url.to_owned(),
        sse: value.get("type").and_then(Value::as_str) == Some("sse"),
        headers,
        from_env: Vec::new(),
    }))
}

/// The entry's URL as the line it replaces (for the report), the command
/// line that puts toolwarden in front of `remote`, and the variables the
/// entry's `env` gets.
fn wrap_remote(
    remote: &remote::Remote,
    change: &Change,
) -> anyhow::Result<(CommandLine, CommandLine, remote::Vars)> {
    let Change::Wrap {
        toolwarden,
        policy,
        options,
        ..
    } = change
    else {
        bail!("not a wrap");
    };
    let (server_args, env) = remote::wrapped_args(remote);
    let mut args = vec!["--policy".to_owned(), policy.clone()];
    args.extend(options.iter().cloned());
    args.extend(server_args);
    let from = CommandLine {
        command: remote.url.clone(),
        args: Vec::new(),
    };
    let to = CommandLine {
        command: toolwarden.clone(),
        args,
    };
    Ok((from, to, env))
}

/// Members of an entry's object, as text, but for `drop`.
fn members_but(entry: Raw<'_>, drop: &[&str]) -> Vec<String> {
    entry
        .members()
        .filter(|(key, _)| !drop.contains(&key.as_ref()))
        .map(|(key, value)| format!("{}: {}", Value::from(key.as_ref()), value.get()))
        .collect()
}

/// `{"a": "1", ...}` of `pairs`.
fn json_object(pairs: &[(String, String)]) -> String {
    let members: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), Value::from(v.as_str())))
        .collect();
    format!("{{{}}}", members.join(", "))
}

/// A url entry become toolwarden's command line: `env` holds the header
/// values (with what it held before); the entry's other members stay.
fn json_entry_wrapped(entry: Raw<'_>, to: &CommandLine, env: &[(String, String)]) -> String {
    let mut members = Vec::new();
    if entry.member("type").is_some() {
        members.push(r#""type": "stdio""#.to_owned());
    }
    members.push(format!("\"command\": {}", Value::from(to.command.as_str())));
    members.push(format!("\"args\": {}", json_list(&to.args)));
    let mut all_env: Vec<(String, String)> = entry
        .member("env")
        .into_iter()
        .flat_map(|e| e.members())
        .filter(|(k, _)| !env.iter().any(|(n, _)| n == k.as_ref()))
        .filter_map(|(k, v)| Some((k.into_owned(), v.as_str()?.into_owned())))
        .collect();
    all_env.extend(env.iter().cloned());
    if !all_env.is_empty() {
        members.push(format!("\"env\": {}", json_object(&all_env)));
    }
    members.extend(members_but(
        entry,
        &[
            "type",
            "url",
            "serverUrl",
            "headers",
            "command",
            "args",
            "env",
        ],
    ));
    format!("{{ {} }}", members.join(", "))
}

/// A wrapped url entry given back: its URL, transport and headers, and
/// `env` without the values toolwarden's wrapping put there.
fn json_entry_unwrapped(
    client: Client,
    entry: Raw<'_>,
    remote: &remote::Remote,
    used: &[String],
) -> String {
    let mut members = Vec::new();
    if matches!(client, Client::ClaudeCode | Client::Vscode) || entry.member("type").is_some() {
        let kind = if remote.sse { "sse" } else { "http" };
        members.push(format!("\"type\": \"{kind}\""));
    }
    let url_key = if client == Client::Windsurf {
        "serverUrl"
    } else {
        "url"
    };
    members.push(format!(
        "\"{url_key}\": {}",
        Value::from(remote.url.as_str())
    ));
    let headers: Vec<(String, String)> = remote
        .headers
        .iter()
        .chain(&remote.from_env)
        .cloned()
        .collect();
    if !headers.is_empty() {
        members.push(format!("\"headers\": {}", json_object(&headers)));
    }
    let env: Vec<String> = entry
        .member("env")
        .into_iter()
        .flat_map(|e| e.members())
        .filter(|(k, _)| !used.iter().any(|u| u == k.as_ref()))
        .map(|(k, v)| format!("{}: {}", Value::from(k.as_ref()), v.get()))
        .collect();
    if !env.is_empty() {
        members.push(format!("\"env\": {{{}}}", env.join(", ")));
    }
    members.extend(members_but(entry, &["type", "command", "args", "env"]));
    format!("{{ {} }}", members.join(", "))
}

/// `["a", "b"]`: strings as JSON, separated as people write them, so that
/// unwrapping gives back the line a person wrote.
fn json_list(items: &[String]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|i| serde_json::to_string(i).expect("a string serializes"))
        .collect();
    format!("[{}]", items.join(", "))
}

/// Where `part` (a slice of `text`) is, and what replaces it.
fn span(text: &str, part: Raw<'_>, with: String) -> (usize, usize, String) {
    let start = part.get().as_ptr() as usize - text.as_ptr() as usize;
    (start, start + part.get().len(), with)
}

/// The splice that removes the member whose value is `value` from the
/// object `object`: from the comma before it (or after it, for the first
/// member) through the value.
fn member_removal(
    text: &str,
    object: Raw<'_>,
    value: Raw<'_>,
) -> anyhow::Result<(usize, usize, String)> {
    let (value_start, value_end, _) = span(text, value, String::new());
    let (object_start, _, _) = span(text, object, String::new());
    let before = &text[object_start..value_start];
    // The key's opening quote: the last `"` before the colon before the
    // value, skipping the key itself.
    let colon = before
        .rfind(':')
        .ok_or_else(|| anyhow!("malformed member"))?;
    let key_end = before[..colon]
        .rfind('"')
        .ok_or_else(|| anyhow!("malformed member"))?;
    let key_start = before[..key_end]
        .rfind('"')
        .ok_or_else(|| anyhow!("malformed member"))?;
    let key_start = object_start + key_start;
    match text[object_start..key_start].rfind(',') {
        Some(comma) => Ok((object_start + comma, value_end, String::new())),
        None => {
            // The first member: take the comma after it instead.
            let rest = &text[value_end..];
            let comma = rest
                .find(|c: char| !c.is_whitespace())
                .filter(|&i| rest[i..].starts_with(','))
                .map_or(value_end, |i| value_end + i + 1);
            Ok((key_start, comma, String::new()))
        }
    }
}

fn edit_toml(text: &str, names: &[String], change: &Change) -> anyhow::Result<Edited> {
    use toml_edit::{DocumentMut, Item, Value as TomlValue};
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| anyhow!("{e} (the file is left as it is)"))?;
    let servers = doc
        .get_mut("mcp_servers")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| anyhow!("no [mcp_servers] table in the file"))?;
    let found: Vec<String> = servers.iter().map(|(k, _)| k.to_owned()).collect();
    check_names(names, found.iter().map(String::as_str))?;
    let mut report = Vec::new();
    let mut changed = false;
    for name in found {
        if !names.is_empty() && !names.contains(&name) {
            continue;
        }
        let entry = servers
            .get_mut(&name)
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| anyhow!("[mcp_servers.{name}] is not a table"))?;
        let Some(command) = entry.get("command").and_then(Item::as_str) else {
            let done = match remote_of_toml(&name, &*entry)? {
                Some(remote) => match change {
                    Change::Wrap { .. } => {
                        let (line, to, env) = wrap_remote(&remote, change)?;
                        toml_wrap_remote(entry, &remote, &to, &env);
                        changed = true;
                        Done::Changed { from: line, to }
                    }
                    Change::Unwrap => Done::Unchanged("not wrapped by toolwarden"),
                },
                None => Done::Skipped("no command and no url".into()),
            };
            report.push((name, done));
            continue;
        };
        let args = match entry.get("args") {
            None => Vec::new(),
            Some(item) => item
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
                .ok_or_else(|| anyhow!("[mcp_servers.{name}] args is not a list of strings"))?,
        };
        let line = CommandLine {
            command: command.to_owned(),
            args,
        };
        if let (Change::Unwrap, Some(server)) = (change, wrapped_server(&line, None)) {
            let env = |var: &str| {
                entry
                    .get("env")
                    .and_then(Item::as_table_like)
                    .and_then(|t| t.get(var))
                    .and_then(Item::as_str)
                    .map(str::to_owned)
            };
            if let Some((remote, used)) = remote::unwrapped(&line.args, &server, env) {
                toml_unwrap_remote(entry, &remote, &used);
                changed = true;
                let to = CommandLine {
                    command: remote.url.clone(),
                    args: Vec::new(),
                };
                report.push((name, Done::Changed { from: line, to }));
                continue;
            }
        }
        let mut kept = Vec::new();
        let outcome = change_of(&line, change, &mut kept);
        if !kept.is_empty() {
            report.push((name.clone(), Done::Kept(kept)));
        }
        let to = match outcome {
            Ok(to) => to,
            Err(done) => {
                report.push((name, done));
                continue;
            }
        };
        let command = entry
            .get_mut("command")
            .and_then(Item::as_value_mut)
            .expect("read above");
        replace_keeping_decor(command, TomlValue::from(to.command.as_str()));
        match entry.get_mut("args").and_then(Item::as_value_mut) {
            _ if to.args.is_empty() => {
                entry.remove("args");
            }
            Some(old) => {
                let array = args_array(old.as_array(), &to.args);
                replace_keeping_decor(old, TomlValue::Array(array));
            }
            None => {
                let array = args_array(None, &to.args);
                entry.insert("args", Item::Value(TomlValue::Array(array)));
            }
        }
        changed = true;
        report.push((name, Done::Changed { from: line, to }));
    }
    Ok((changed.then(|| doc.to_string()), report))
}

/// A Codex remote server: `url`, with `bearer_token_env_var`,
/// `http_headers` (literal values) and `env_http_headers` (header to
/// variable); `None` for an entry without a URL.
fn remote_of_toml(
    name: &str,
    entry: &dyn toml_edit::TableLike,
) -> anyhow::Result<Option<remote::Remote>> {
    use toml_edit::Item;
    let Some(url) = entry.get("url") else {
        return Ok(None);
    };
    let url = url
        .as_str()
        .filter(|u| remote::is_url(u))
        .ok_or_else(|| anyhow!("[mcp_servers.{name}] url is not an http:// or https:// URL"))?;
    let strings = |key: &str| -> anyhow::Result<Vec<(String, String)>> {
        let Some(table) = entry.get(key) else {
            return Ok(Vec::new());
        };
        let table = table
            .as_table_like()
            .ok_or_else(|| anyhow!("[mcp_servers.{name}] {key} is not a table"))?;
        table
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| anyhow!("[mcp_servers.{name}] {key}.{k} is not a string"))
            })
            .collect()
    };
    let mut from_env: Vec<(String, String)> = Vec::new();
    if let Some(var) = entry.get("bearer_token_env_var").and_then(Item::as_str) {
        from_env.push(("Authorization".into(), format!("Bearer ${{{var}}}")));
    }
    for (header, var) in strings("env_http_headers")? {
        from_env.push((header, format!("${{{var}}}")));
    }
    Ok(Some(remote::Remote {
        url: url.to_owned(),
        sse: false,
        headers: strings("http_headers")?,
        from_env,
    }))
}

/// The variables Codex must pass to toolwarden for `remote`'s headers.
fn forwarded_vars(remote: &remote::Remote) -> Vec<String> {
    remote
        .from_env
        .iter()
        .filter_map(|(_, value)| {
            let start = value.find("${")? + 2;
            let end = start + value[start..].find('}')?;
            Some(value[start..end].to_owned())
        })
        .collect()
}

fn toml_wrap_remote(
    entry: &mut dyn toml_edit::TableLike,
    remote: &remote::Remote,
    to: &CommandLine,
    env: &[(String, String)],
) {
    use toml_edit::{Item, Value as TomlValue};
    for key in [
        "url",
        "bearer_token_env_var",
        "http_headers",
        "env_http_headers",
    ] {
        entry.remove(key);
    }
    entry.insert("command", Item::Value(TomlValue::from(to.command.as_str())));
    entry.insert(
        "args",
        Item::Value(TomlValue::Array(args_array(None, &to.args))),
    );
    if !env.is_empty() {
        let table = entry
            .entry("env")
            .or_insert(Item::Value(TomlValue::InlineTable(Default::default())));
        if let Some(table) = table.as_table_like_mut() {
            for (var, value) in env {
                table.insert(var, Item::Value(TomlValue::from(value.as_str())));
            }
        }
    }
    let vars = forwarded_vars(remote);
    if !vars.is_empty() {
        let list = entry
            .entry("env_vars")
            .or_insert(Item::Value(TomlValue::Array(Default::default())));
        if let Some(list) = list.as_array_mut() {
            for var in vars {
                if !list.iter().any(|v| v.as_str() == Some(var.as_str())) {
                    list.push(var);
                }
            }
        }
    }
}

fn toml_unwrap_remote(
    entry: &mut dyn toml_edit::TableLike,
    remote: &remote::Remote,
    used: &[String],
) {
    use toml_edit::{Item, Value as TomlValue};
    entry.remove("command");
    entry.remove("args");
    entry.insert("url", Item::Value(TomlValue::from(remote.url.as_str())));
    if let Some(table) = entry.get_mut("env").and_then(Item::as_table_like_mut) {
        for var in used {
            table.remove(var);
        }
        if table.is_empty() {
            entry.remove("env");
        }
    }
    let vars = forwarded_vars(remote);
    if let Some(list) = entry.get_mut("env_vars").and_then(Item::as_array_mut) {
        list.retain(|v| !v.as_str().is_some_and(|v| vars.iter().any(|f| f == v)));
        if list.is_empty() {
            entry.remove("env_vars");
        }
    }
    let table = |pairs: Vec<(String, String)>| {
        let mut t = toml_edit::InlineTable::new();
        for (k, v) in pairs {
            t.insert(&k, TomlValue::from(v));
        }
        Item::Value(TomlValue::InlineTable(t))
    };
    if !remote.headers.is_empty() {
        entry.insert("http_headers", table(remote.headers.clone()));
    }
    let mut by_var = Vec::new();
    for (header, value) in &remote.from_env {
        let bearer = value
            .strip_prefix("Bearer ")
            .and_then(remote::variable)
            .filter(|_| header.eq_ignore_ascii_case("authorization"));
        match (bearer, remote::variable(value)) {
            (Some(var), _) => {
                entry.insert("bearer_token_env_var", Item::Value(TomlValue::from(var)));
            }
            (None, Some(var)) => by_var.push((header.clone(), var.to_owned())),
            (None, None) => {}
        }
    }
    if !by_var.is_empty() {
        entry.insert("env_http_headers", table(by_var));
    }
}

/// Puts `new` where `old` was, with the spaces and the comment around
/// `old` (`command = "npx" # the server` keeps `# the server`).
fn replace_keeping_decor(old: &mut toml_edit::Value, mut new: toml_edit::Value) {
    *new.decor_mut() = old.decor().clone();
    *old = new;
}

/// The TOML array of `args`, laid out as `old` was: the arguments the two
/// end with (the server's own, after `--`) keep their comments and line
/// breaks; the others get the line break and indent of `old`'s first
/// element when it had one; the comments before the closing bracket stay.
/// A comment on an argument that goes away goes with it.
fn args_array(old: Option<&toml_edit::Array>, args: &[String]) -> toml_edit::Array {
    let mut array: toml_edit::Array = args.iter().map(String::as_str).collect();
    let Some(old) = old else {
        return array;
    };
    let old_args: Vec<Option<&str>> = old.iter().map(toml_edit::Value::as_str).collect();
    let shared = old_args
        .iter()
        .rev()
        .zip(args.iter().rev())
        .take_while(|(o, n)| **o == Some(n.as_str()))
        .count();
    let prefix_of = |value: &toml_edit::Value| {
        value
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .map(str::to_owned)
    };
    // Spaces alone ("", " ") are left to toml_edit, which puts them by
    // position; a line break or a comment is kept.
    let laid_out = |prefix: &String| prefix.contains(['\n', '#']);
    let new_prefix = old
        .get(0)
        .and_then(prefix_of)
        .filter(|p| laid_out(p) && !p.contains('#'));
    let (first_new, first_old) = (args.len() - shared, old.len() - shared);
    for (i, value) in array.iter_mut().enumerate() {
        let decor = value.decor_mut();
        if i < first_new {
            if let Some(prefix) = &new_prefix {
                decor.set_prefix(prefix.clone());
            }
            continue;
        }
        let from = old.get(first_old + i - first_new).expect("within old");
        if let Some(prefix) = prefix_of(from).filter(laid_out) {
            decor.set_prefix(prefix);
        }
        if let Some(suffix) = from.decor().suffix() {
            decor.set_suffix(suffix.clone());
        }
    }
    array.set_trailing(old.trailing().clone());
    array.set_trailing_comma(old.trailing_comma());
    array
}

/// The report, a line per server.
pub fn report(report: &[(String, Done)], dry_run: bool) -> String {
    let mut out = String::new();
    for (name, done) in report {
        let line = match done {
            Done::Changed { from, to } => format!(
                "{name}: {}{}\n    now: {}\n",
                from.shown(),
                if dry_run {
                    " (dry run: would become)"
                } else {
                    ""
                },
                to.shown()
            ),
            Done::Unchanged(why) => format!("{name}: unchanged, {why}\n"),
            Done::Skipped(why) => format!("{name}: skipped, {why}\n"),
            Done::Kept(options) => format!(
                "{name}: keeps the options it was wrapped with: {} (--replace-options drops them)\n",
                crate::redact::command(options)
            ),
        };
        out.push_str(&line);
    }
    out
}

/// Writes `text` to the config file at `path`, which held `read` when it
/// was read, after a copy of it is kept beside it; returns the copy's path.
///
/// A link stays a link: its target is edited (dotfile managers keep
/// configs as links). The new text goes to a file of a fresh name created
/// beside the target, never through a link planted there, with the
/// target's mode from the start (a 0600 config holding secrets is never
/// readable by others), and is renamed over the target. A file that no
/// longer holds `read` (its client wrote it meanwhile) is left alone.
pub fn write_with_backup(path: &Path, read: &str, text: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let target =
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))?;
    let mode = std::fs::metadata(&target)
        .with_context(|| format!("cannot read {}", target.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let tmp = sibling(
        &target,
        &format!(".toolwarden-{}.tmp", crate::audit::random_id()),
    );
    let written = create_exclusive(&tmp, mode).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("cannot write {}: {e}", tmp.display()));
    }
    let backup = match keep_copy(path, read, mode) {
        Ok(backup) => backup,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // The client may have written the file since it was read: renaming
    // now would throw its change away.
    if std::fs::read(&target).ok().as_deref() != Some(read.as_bytes()) {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&backup);
        bail!(
            "{} changed while toolwarden was editing it (is its client running and writing it?); nothing written, run the command again",
            path.display()
        );
    }
    std::fs::rename(&tmp, &target).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot replace {}", target.display())
    })?;
    Ok(backup)
}

/// `path` with `suffix` appended to its name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A new file at `path`, never one that exists and never through a link,
/// created with (at most) `mode` and then given exactly `mode`.
fn create_exclusive(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(path)?;
    // The umask may have taken bits away; it never adds any.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Keeps `read` beside `path` as `PATH.toolwarden-STAMP.bak`; a second
/// copy within the same second gets `-2`, `-3`..., never the first's name.
fn keep_copy(path: &Path, read: &str, mode: u32) -> anyhow::Result<PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    for n in 1..1000 {
        let count = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let backup = sibling(path, &format!(".toolwarden-{stamp}{count}.bak"));
        match create_exclusive(&backup, mode) {
            Ok(mut file) => {
                return file
                    .write_all(read.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map(|()| backup.clone())
                    .with_context(|| format!("cannot keep a copy as {}", backup.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(anyhow!("cannot keep a copy as {}: {e}", backup.display()));
            }
        }
    }
    bail!(
        "cannot keep a copy of {}: too many copies this second",
        path.display()
    )
}

#[cfg(test)]
mod tests;
