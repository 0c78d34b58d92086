//! Wrapping and unwrapping each client's format: every other byte kept,
//! idempotent, and unwrapped back to what was there.

use super::*;

const CLAUDE: &str = r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "runpod": {
      "command": "npx",
      "args": ["-y", "@runpod/mcp-server@4.0.0"],
      "env": { "RUNPOD_API_KEY": "rp_secret" }
    },
    "fractera": { "url": "https://mcp.fractera.example/sse" },
    "clock": {"command": "/usr/local/bin/clock-mcp", "disabled": false}
  }
}
"#;

fn wrap_with(policy: &str) -> Change {
    Change::Wrap {
        toolwarden: "/opt/bin/toolwarden".into(),
        policy: policy.into(),
        options: Vec::new(),
        replace_options: false,
    }
}

#[test]
fn claude_desktop_wraps_every_stdio_server_and_unwraps_byte_for_byte() {
    let (text, done) = edit(
        Client::ClaudeDesktop,
        CLAUDE,
        &[],
        &wrap_with("/p/runpod.json"),
    )
    .unwrap();
    let text = text.unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let runpod = &value["mcpServers"]["runpod"];
    assert_eq!(runpod["command"], "/opt/bin/toolwarden");
    assert_eq!(
        runpod["args"],
        serde_json::json!([
            "--policy",
            "/p/runpod.json",
            "--",
            "npx",
            "-y",
            "@runpod/mcp-server@4.0.0"
        ])
    );
    assert_eq!(runpod["env"]["RUNPOD_API_KEY"], "rp_secret");
    let clock = &value["mcpServers"]["clock"];
    assert_eq!(
        clock["args"],
        serde_json::json!([
            "--policy",
            "/p/runpod.json",
            "--",
            "/usr/local/bin/clock-mcp"
        ])
    );
    assert_eq!(clock["disabled"], false);
    assert!(text.starts_with("{\n  \"globalShortcut\": \"Ctrl+Space\",\n  \"mcpServers\": {\n    \"runpod\": {\n      \"command\": \"/opt/bin/toolwarden\",\n      \"args\": [\"--policy\""), "{text}");
    // A remote server: toolwarden in front of its URL.
    assert!(text.contains(r#""fractera": { "command": "/opt/bin/toolwarden", "args": ["--policy", "/p/runpod.json", "--", "https://mcp.fractera.example/sse"] },"#), "{text}");
    assert!(matches!(&done[1], (n, Done::Changed { .. }) if n == "fractera"));

    // Idempotent.
    let (again, done) = edit(
        Client::ClaudeDesktop,
        &text,
        &[],
        &wrap_with("/p/runpod.json"),
    )
    .unwrap();
    assert_eq!(again, None);
    assert!(matches!(
        done[0].1,
        Done::Unchanged("already wrapped with this policy and options")
    ));
    // Another policy replaces the first, without wrapping twice.
    let (other, _) = edit(
        Client::ClaudeDesktop,
        &text,
        &["runpod".into()],
        &wrap_with("/p/strict.json"),
    )
    .unwrap();
    let other: Value = serde_json::from_str(&other.unwrap()).unwrap();
    assert_eq!(
        other["mcpServers"]["runpod"]["args"],
        serde_json::json!([
            "--policy",
            "/p/strict.json",
            "--",
            "npx",
            "-y",
            "@runpod/mcp-server@4.0.0"
        ])
    );

    // Options of toolwarden's own go before `--`, and unwrap skips them.
    let monitored = Change::Wrap {
        toolwarden: "/opt/bin/toolwarden".into(),
        policy: "/p/runpod.json".into(),
        options: vec![
            "--monitor".into(),
            "--audit".into(),
            "/var/log/tw.jsonl".into(),
        ],
        replace_options: false,
    };
    let (with_options, _) =
        edit(Client::ClaudeDesktop, &text, &["runpod".into()], &monitored).unwrap();
    let with_options = with_options.unwrap();
    assert!(with_options.contains(r#""args": ["--policy", "/p/runpod.json", "--monitor", "--audit", "/var/log/tw.jsonl", "--", "npx""#), "{with_options}");
    let (back, _) = edit(Client::ClaudeDesktop, &with_options, &[], &Change::Unwrap).unwrap();
    assert_eq!(back.unwrap(), CLAUDE);
    let (back, _) = edit(Client::ClaudeDesktop, &text, &[], &Change::Unwrap).unwrap();
    assert_eq!(back.unwrap(), CLAUDE);
    let (nothing, done) = edit(Client::ClaudeDesktop, CLAUDE, &[], &Change::Unwrap).unwrap();
    assert_eq!(nothing, None);
    assert!(matches!(
        done[0].1,
        Done::Unchanged("not wrapped by toolwarden")
    ));
}

#[test]
fn named_servers_only_and_mistakes_refused() {
    let (text, done) = edit(
        Client::Cursor,
        CLAUDE,
        &["clock".into()],
        &wrap_with("/p.json"),
    )
    .unwrap();
    assert_eq!(done.len(), 1);
    let value: Value = serde_json::from_str(&text.unwrap()).unwrap();
    assert_eq!(value["mcpServers"]["runpod"]["command"], "npx");
    let e = edit(
        Client::Cursor,
        CLAUDE,
        &["nope".into()],
        &wrap_with("/p.json"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains(r#"no server "nope" in the file (it has: runpod, fractera, clock)"#),
        "{e}"
    );
    for bad in [
        "{\"mcpServers\": {} /* a comment never closed\n}",
        "{\"mcpServers\": {}, \"mcpServers\": {}}",
        "{\"mcpServers\": {},,}",
        "[]",
    ] {
        assert!(
            edit(Client::Cursor, bad, &[], &wrap_with("/p.json")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn vscode_keeps_its_servers_under_servers() {
    let vscode = r#"{"servers": {"rp": {"type": "stdio", "command": "npx", "args": ["-y", "x"]}}, "inputs": []}"#;
    let (text, _) = edit(Client::Vscode, vscode, &[], &wrap_with("/p.json")).unwrap();
    let text = text.unwrap();
    assert!(text.contains(r#""type": "stdio", "command": "/opt/bin/toolwarden", "args": ["--policy", "/p.json", "--", "npx", "-y", "x"]"#), "{text}");
    let (back, _) = edit(Client::Vscode, &text, &[], &Change::Unwrap).unwrap();
    assert_eq!(back.unwrap(), vscode);
    assert!(edit(Client::Vscode, CLAUDE, &[], &wrap_with("/p.json")).is_err());
}

#[test]
fn vscode_json_with_comments_and_trailing_commas_is_edited_in_place() {
    let vscode = r#"{
  // Servers of this workspace. "servers": {} in a comment is no key.
  "servers": {
    /* the reference server */
    "everything": {
      "type": "stdio",
      "command": "npx", // from npm
      "args": ["-y", "@modelcontextprotocol/server-everything",],
    },
    "bare": {"command": "bare-mcp", /* no args */},
    "url": "https://example.com/a//b", // not a comment: inside a string
  },
}
"#;
    let (text, done) = edit(Client::Vscode, vscode, &[], &wrap_with("/p.json")).unwrap();
    let text = text.unwrap();
    assert_eq!(
        text,
        r#"{
  // Servers of this workspace. "servers": {} in a comment is no key.
  "servers": {
    /* the reference server */
    "everything": {
      "type": "stdio",
      "command": "/opt/bin/toolwarden", // from npm
      "args": ["--policy", "/p.json", "--", "npx", "-y", "@modelcontextprotocol/server-everything"],
    },
    "bare": {"command": "/opt/bin/toolwarden", "args": ["--policy", "/p.json", "--", "bare-mcp"], /* no args */},
    "url": "https://example.com/a//b", // not a comment: inside a string
  },
}
"#
    );
    assert!(
        matches!(&done[2], (n, Done::Skipped(_)) if n == "url"),
        "{done:?}"
    );
    let (back, _) = edit(Client::Vscode, &text, &[], &Change::Unwrap).unwrap();
    let back = back.unwrap();
    // Unwrapped, with every comment where it was; only the trailing comma
    // inside the rewritten args list is gone.
    assert_eq!(
        back,
        vscode.replace(r#"server-everything",]"#, r#"server-everything"]"#)
    );
    let e = edit(Client::Vscode, "{\n  /* open\n", &[], &Change::Unwrap).unwrap_err();
    assert!(e.to_string().starts_with("line 2, column 3:"), "{e}");
}

#[test]
fn codex_toml_keeps_the_comments_on_the_lines_it_edits() {
    let codex = r#"[mcp_servers.everything]
command = "npx" # the server
args = [
  "-y", # fetch it first
  "@modelcontextprotocol/server-everything", # pinned in package.json
  # more to come
]

[mcp_servers.one]
command = "one-mcp"   # no arguments
args = ["--fast"] # be quick
"#;
    let (text, _) = edit(Client::Codex, codex, &[], &wrap_with("/p.json")).unwrap();
    let text = text.unwrap();
    assert_eq!(
        text,
        r#"[mcp_servers.everything]
command = "/opt/bin/toolwarden" # the server
args = [
  "--policy",
  "/p.json",
  "--",
  "npx",
  "-y", # fetch it first
  "@modelcontextprotocol/server-everything", # pinned in package.json
  # more to come
]

[mcp_servers.one]
command = "/opt/bin/toolwarden"   # no arguments
args = ["--policy", "/p.json", "--", "one-mcp", "--fast"] # be quick
"#
    );
    let (back, _) = edit(Client::Codex, &text, &[], &Change::Unwrap).unwrap();
    assert_eq!(back.unwrap(), codex);
}

#[test]
fn codex_toml_keeps_its_comments_and_unwraps_exactly() {
    let codex = r#"model = "o4"

# The servers this machine runs.
[mcp_servers.runpod]
command = "npx"
args = ["-y", "@runpod/mcp-server@4.0.0"]
env = { RUNPOD_API_KEY = "rp_secret" }

[mcp_servers.clock]
command = "clock-mcp"

[mcp_servers.remote]
url = "https://example.com/mcp"
"#;
    let (text, done) = edit(Client::Codex, codex, &[], &wrap_with("/p/runpod.json")).unwrap();
    let text = text.unwrap();
    assert!(text.contains("# The servers this machine runs.\n[mcp_servers.runpod]\ncommand = \"/opt/bin/toolwarden\"\nargs = [\"--policy\", \"/p/runpod.json\", \"--\", \"npx\", \"-y\", \"@runpod/mcp-server@4.0.0\"]\nenv = { RUNPOD_API_KEY = \"rp_secret\" }\n"), "{text}");
    assert!(text.contains("[mcp_servers.remote]\ncommand = \"/opt/bin/toolwarden\"\nargs = [\"--policy\", \"/p/runpod.json\", \"--\", \"https://example.com/mcp\"]\n"), "{text}");
    assert!(matches!(&done[2], (n, Done::Changed { .. }) if n == "remote"));
    let (again, _) = edit(Client::Codex, &text, &[], &wrap_with("/p/runpod.json")).unwrap();
    assert_eq!(again, None);
    let (back, _) = edit(Client::Codex, &text, &[], &Change::Unwrap).unwrap();
    assert_eq!(back.unwrap(), codex);
    assert!(edit(Client::Codex, "[mcp_servers\n", &[], &wrap_with("/p.json")).is_err());
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tw-wrap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_its_client_wrote_meanwhile_is_left_alone() {
    let dir = scratch("meanwhile");
    let config = dir.join("mcp.json");
    std::fs::write(&config, "written by the client since").unwrap();
    let e = write_with_backup(&config, "as read", "wrapped").unwrap_err();
    assert!(
        e.to_string()
            .contains("changed while toolwarden was editing it"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "written by the client since"
    );
    // No temporary file left, no copy kept.
    assert_eq!(names(&dir), ["mcp.json"]);
}

#[test]
fn copies_kept_within_one_second_never_overwrite_each_other() {
    let dir = scratch("same-second");
    let config = dir.join("mcp.json");
    std::fs::write(&config, "0").unwrap();
    // Three writes take milliseconds: two at least fall in one second.
    let backups: Vec<PathBuf> = ["0", "1", "2"]
        .iter()
        .map(|was| {
            let next = (was.parse::<u8>().unwrap() + 1).to_string();
            write_with_backup(&config, was, &next).unwrap()
        })
        .collect();
    for (backup, was) in backups.iter().zip(["0", "1", "2"]) {
        assert_eq!(std::fs::read_to_string(backup).unwrap(), was);
    }
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "3");
    assert_eq!(names(&dir).len(), 4, "{:?}", names(&dir));
}

#[test]
fn a_new_file_is_created_with_the_mode_given_and_never_through_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("create");
    let file = dir.join("new");
    let created = create_exclusive(&file, 0o600).unwrap();
    // Before anything is written to it.
    assert_eq!(
        created.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(create_exclusive(&file, 0o600).is_err(), "an existing file");
    let victim = dir.join("victim");
    std::os::unix::fs::symlink(&victim, dir.join("planted")).unwrap();
    assert!(create_exclusive(&dir.join("planted"), 0o600).is_err());
    assert!(!victim.exists());
}

#[test]
fn rewrapping_keeps_the_options_of_the_existing_wrapping_unless_replaced() {
    let wrapped = r#"{"mcpServers": {"x": {"command": "/opt/bin/toolwarden", "args": ["--policy", "/p/a.json", "--no-reload", "--pin", "/p/pins.json", "--identity=me", "--", "npx", "x"]}}}"#;
    let wrap = |options: &[&str], replace_options| Change::Wrap {
        toolwarden: "/opt/bin/toolwarden".into(),
        policy: "/p/b.json".into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        replace_options,
    };
    let args = |text: Option<String>| {
        let value: Value = serde_json::from_str(&text.unwrap()).unwrap();
        value["mcpServers"]["x"]["args"].clone()
    };
    let (text, done) = edit(
        Client::Cursor,
        wrapped,
        &[],
        &wrap(&["--audit", "/l"], false),
    )
    .unwrap();
    assert_eq!(
        args(text),
        serde_json::json!([
            "--policy",
            "/p/b.json",
            "--no-reload",
            "--pin",
            "/p/pins.json",
            "--identity=me",
            "--audit",
            "/l",
            "--",
            "npx",
            "x"
        ])
    );
    assert_eq!(
        report(&done, false).lines().next().unwrap(),
        "x: keeps the options it was wrapped with: --no-reload --pin /p/pins.json --identity=me (--replace-options drops them)"
    );
    // An option given replaces the kept one of its name, in its place.
    let (text, _) = edit(
        Client::Cursor,
        wrapped,
        &[],
        &wrap(&["--pin", "/p/new.json"], false),
    )
    .unwrap();
    assert_eq!(
        args(text),
        serde_json::json!([
            "--policy",
            "/p/b.json",
            "--no-reload",
            "--pin",
            "/p/new.json",
            "--identity=me",
            "--",
            "npx",
            "x"
        ])
    );
    let (text, done) = edit(Client::Cursor, wrapped, &[], &wrap(&["--monitor"], true)).unwrap();
    assert_eq!(
        args(text),
        serde_json::json!(["--policy", "/p/b.json", "--monitor", "--", "npx", "x"])
    );
    assert!(!done.iter().any(|(_, d)| matches!(d, Done::Kept(_))));
}

/// The report shows each command as it is and will be, with the secrets
/// a config keeps in its arguments hidden.
#[test]
fn the_report_hides_secrets_in_the_commands() {
    let config = r#"{"mcpServers": {"stripe": {"command": "npx",
      "args": ["-y", "@stripe/mcp", "--api-key", "sk_live_51Habc0123456789abcdef", "--token=t0ps3cret"]}}}"#;
    let (_, done) = edit(
        Client::ClaudeDesktop,
        config,
        &[],
        &wrap_with("/p/stripe.json"),
    )
    .unwrap();
    let shown = report(&done, true);
    assert!(shown.contains("--api-key [redacted]"), "{shown}");
    assert!(
        !shown.contains("sk_live") && !shown.contains("t0ps3cret"),
        "{shown}"
    );
}

#[test]
fn claude_desktops_config_is_where_each_system_keeps_it() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    };
    type Vars = &'static [(&'static str, &'static str)];
    let table: [(&str, Vars, &str); 4] = [
        (
            "linux",
            &[("HOME", "/home/me")],
            "/home/me/.config/Claude/claude_desktop_config.json",
        ),
        (
            "linux",
            &[("HOME", "/home/me"), ("XDG_CONFIG_HOME", "/cfg")],
            "/cfg/Claude/claude_desktop_config.json",
        ),
        (
            "macos",
            &[("HOME", "/Users/me")],
            "/Users/me/Library/Application Support/Claude/claude_desktop_config.json",
        ),
        (
            "windows",
            &[("APPDATA", "C:/Users/me/AppData/Roaming")],
            "C:/Users/me/AppData/Roaming/Claude/claude_desktop_config.json",
        ),
    ];
    for (os, vars, expected) in table {
        let path = Client::ClaudeDesktop
            .default_config_on(os, env(vars))
            .unwrap();
        assert_eq!(path, PathBuf::from(expected), "{os} {vars:?}");
    }
    let err = Client::ClaudeDesktop
        .default_config_on("windows", env(&[("HOME", "/home/me")]))
        .unwrap_err();
    assert!(err.to_string().contains("APPDATA is not set"), "{err}");
}

fn wrap_with_options(policy: &str, options: &[&str]) -> Change {
    Change::Wrap {
        toolwarden: "/opt/bin/toolwarden".into(),
        policy: policy.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        replace_options: false,
    }
}

#[test]
fn url_servers_are_wrapped_with_their_headers_in_env_and_given_back() {
    let claude_code = r#"{"mcpServers": {
  "linear": {"type": "http", "url": "https://mcp.linear.example/mcp", "headers": {"Authorization": "Bearer lin_secret", "X-Team": "core"}, "timeout": 30},
  "legacy": {"type": "sse", "url": "http://127.0.0.1:3001/sse"}
}}"#;
    let (text, done) = edit(
        Client::ClaudeCode,
        claude_code,
        &[],
        &wrap_with("/p/linear.json"),
    )
    .unwrap();
    let text = text.unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let linear = &value["mcpServers"]["linear"];
    assert_eq!(linear["type"], "stdio");
    assert_eq!(linear["command"], "/opt/bin/toolwarden");
    assert_eq!(
        linear["args"],
        serde_json::json!([
            "--policy",
            "/p/linear.json",
            "--header",
            "Authorization: ${TOOLWARDEN_HEADER_AUTHORIZATION}",
            "--header",
            "X-Team: ${TOOLWARDEN_HEADER_X_TEAM}",
            "--",
            "https://mcp.linear.example/mcp"
        ])
    );
    // The secret is in env, never an argument anyone sees in `ps`.
    assert_eq!(
        linear["env"]["TOOLWARDEN_HEADER_AUTHORIZATION"],
        "Bearer lin_secret"
    );
    assert!(!linear["args"].to_string().contains("lin_secret"));
    assert_eq!(linear["timeout"], 30);
    assert!(linear.get("url").is_none() && linear.get("headers").is_none());
    let legacy = &value["mcpServers"]["legacy"];
    assert_eq!(
        legacy["args"],
        serde_json::json!([
            "--policy",
            "/p/linear.json",
            "--transport",
            "sse",
            "--",
            "http://127.0.0.1:3001/sse"
        ])
    );
    assert!(matches!(&done[0], (n, Done::Changed { .. }) if n == "linear"));
    // The report shows no header value.
    assert!(!report(&done, false).contains("lin_secret"));

    // Wrapped again with another policy: the headers stay, unreported.
    let (other, done) = edit(
        Client::ClaudeCode,
        &text,
        &["linear".into()],
        &wrap_with("/p/strict.json"),
    )
    .unwrap();
    let other: Value = serde_json::from_str(&other.unwrap()).unwrap();
    assert_eq!(
        other["mcpServers"]["linear"]["args"][1],
        serde_json::json!("/p/strict.json")
    );
    assert_eq!(
        other["mcpServers"]["linear"]["args"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    assert!(!done.iter().any(|(_, d)| matches!(d, Done::Kept(_))));

    let (back, _) = edit(Client::ClaudeCode, &text, &[], &Change::Unwrap).unwrap();
    let back: Value = serde_json::from_str(&back.unwrap()).unwrap();
    let original: Value = serde_json::from_str(claude_code).unwrap();
    assert_eq!(back, original);
}

#[test]
fn windsurf_and_cursor_urls_and_codex_remote_headers_round_trip() {
    let windsurf =
        r#"{"mcpServers": {"notion": { "serverUrl": "https://mcp.notion.example/mcp" }}}"#;
    let (text, _) = edit(Client::Windsurf, windsurf, &[], &wrap_with("/p/n.json")).unwrap();
    let text = text.unwrap();
    assert!(
        text.contains(
            r#""args": ["--policy", "/p/n.json", "--", "https://mcp.notion.example/mcp"]"#
        ),
        "{text}"
    );
    let (back, _) = edit(Client::Windsurf, &text, &[], &Change::Unwrap).unwrap();
    assert_eq!(back.unwrap(), windsurf);

    let cursor = r#"{"mcpServers": {"gh": { "url": "https://api.github.example/mcp", "headers": {"Authorization": "Bearer ghp_x"} }}}"#;
    let (text, _) = edit(Client::Cursor, cursor, &[], &wrap_with("/p/gh.json")).unwrap();
    let text = text.unwrap();
    assert!(text.contains(r#""args": ["--policy", "/p/gh.json", "--header", "Authorization: ${TOOLWARDEN_HEADER_AUTHORIZATION}", "--", "https://api.github.example/mcp"], "env": {"TOOLWARDEN_HEADER_AUTHORIZATION": "Bearer ghp_x"}"#), "{text}");
    let (back, _) = edit(Client::Cursor, &text, &[], &Change::Unwrap).unwrap();
    assert_eq!(back.unwrap(), cursor);

    let codex = r#"[mcp_servers.linear]
url = "https://mcp.linear.example/mcp"
bearer_token_env_var = "LINEAR_TOKEN"
http_headers = { "X-Team" = "core" }
env_http_headers = { "X-Org" = "LINEAR_ORG" }
"#;
    let (text, _) = edit(Client::Codex, codex, &[], &wrap_with("/p/l.json")).unwrap();
    let text = text.unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let entry = &doc["mcp_servers"]["linear"];
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "--policy",
            "/p/l.json",
            "--header",
            "X-Team: ${TOOLWARDEN_HEADER_X_TEAM}",
            "--header",
            "Authorization: Bearer ${LINEAR_TOKEN}",
            "--header",
            "X-Org: ${LINEAR_ORG}",
            "--",
            "https://mcp.linear.example/mcp"
        ]
    );
    assert_eq!(
        entry["env"]["TOOLWARDEN_HEADER_X_TEAM"].as_str(),
        Some("core")
    );
    // Codex passes a stdio server only the variables it is told to.
    let forwarded: Vec<&str> = entry["env_vars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(forwarded, ["LINEAR_TOKEN", "LINEAR_ORG"]);
    let (back, _) = edit(Client::Codex, &text, &[], &Change::Unwrap).unwrap();
    let back: toml_edit::DocumentMut = back.unwrap().parse().unwrap();
    let entry = &back["mcp_servers"]["linear"];
    assert_eq!(
        entry["url"].as_str(),
        Some("https://mcp.linear.example/mcp")
    );
    assert_eq!(entry["bearer_token_env_var"].as_str(), Some("LINEAR_TOKEN"));
    assert_eq!(entry["http_headers"]["X-Team"].as_str(), Some("core"));
    assert_eq!(
        entry["env_http_headers"]["X-Org"].as_str(),
        Some("LINEAR_ORG")
    );
    for gone in ["command", "args", "env", "env_vars"] {
        assert!(entry.get(gone).is_none(), "{gone}: {back}");
    }
}

#[test]
fn options_with_values_are_read_back_whole_on_a_rewrap() {
    let (text, _) = edit(
        Client::ClaudeDesktop,
        CLAUDE,
        &["runpod".into()],
        &wrap_with_options(
            "/p/r.json",
            &["--approval", "inbox", "--approval-hold", "20s"],
        ),
    )
    .unwrap();
    let text = text.unwrap();
    let (again, _) = edit(
        Client::ClaudeDesktop,
        &text,
        &["runpod".into()],
        &wrap_with_options("/p/r.json", &["--approval", "client"]),
    )
    .unwrap();
    let value: Value = serde_json::from_str(&again.unwrap()).unwrap();
    assert_eq!(
        value["mcpServers"]["runpod"]["args"],
        serde_json::json!([
            "--policy",
            "/p/r.json",
            "--approval",
            "client",
            "--approval-hold",
            "20s",
            "--",
            "npx",
            "-y",
            "@runpod/mcp-server@4.0.0"
        ])
    );
}
