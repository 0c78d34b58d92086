//! `toolwarden wrap` and `unwrap` on real config files: the wrapped config
//! starts a working session through toolwarden, and unwrapping gives the
//! file back.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;

fn claude_config(dir: &Path) -> (PathBuf, String) {
    let text = format!(
        r#"{{
  "mcpServers": {{
    "genieacs": {{
      "command": {},
      "args": ["--tools", {}],
      "env": {{ "GENIEACS_TOKEN": "t0ken" }}
    }},
    "fractera": {{ "url": "https://mcp.fractera.example/sse" }}
  }}
}}
"#,
        serde_json::to_string(&mock_server()).unwrap(),
        serde_json::to_string(&root().join("examples/tools/genieacs.json")).unwrap()
    );
    let path = dir.join("claude_desktop_config.json");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

fn backups(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".bak")
        })
        .count()
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = toolwarden().args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_wrapped_claude_desktop_config_starts_a_working_session() {
    let dir = temp_dir("wrap-claude");
    let (config, original) = claude_config(&dir);
    let policy = root().join("policies/genieacs.json");
    let wrap = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "wrap".as_ref(),
            "claude-desktop".as_ref(),
            "--policy".as_ref(),
            policy.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        run(&args)
    };
    // --dry-run prints the change and writes nothing.
    let (code, out, _) = wrap(&["--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("(dry run: would become)"), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    let (code, out, err) = wrap(&[]);
    assert_eq!(code, 0, "{err}");
    // The remote server: toolwarden in front of its URL.
    assert!(
        out.contains("fractera: https://mcp.fractera.example/sse\n    now: "),
        "{out}"
    );
    assert!(out.contains("the previous file is kept as"), "{out}");
    assert_eq!(backups(&dir), 1);
    let wrapped: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let entry = &wrapped["mcpServers"]["genieacs"];
    assert_eq!(
        entry["command"].as_str().unwrap(),
        toolwarden_bin().canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(
        entry["args"][1],
        policy.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(entry["env"]["GENIEACS_TOKEN"], "t0ken");

    // Started as a client starts it, the session is toolwarden's.
    let args: Vec<String> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let mut cmd = Command::new(entry["command"].as_str().unwrap());
    cmd.args(&args)
        .env("GENIEACS_TOKEN", "t0ken")
        .env("XDG_STATE_HOME", state_home("wrap-session"));
    let mut s = Session::start(&mut cmd);
    s.send(&initialize("2025-06-18"));
    assert_eq!(
        s.recv_json()["result"]["serverInfo"]["name"],
        "genieacs-mock"
    );
    s.send(&call(
        1,
        "retry_task",
        r#"{"task_id":"5f1a2b3c4d5e6f7a8b9c0d1e"}"#,
    ));
    assert_eq!(decision(&s.recv_json()), None);
    s.send(&call(2, "retry_task", r#"{"task_id":"../etc"}"#));
    assert_eq!(
        decision(&s.recv_json()).as_deref(),
        Some("invalid_arguments")
    );
    assert_eq!(s.wait().code(), Some(0));
    // And the TypeScript SDK's client connects through it.
    let mut node = Command::new("node");
    node.current_dir(root().join("tests/npm"))
        .arg("connect.mjs")
        .arg(entry["command"].as_str().unwrap())
        .args(&args)
        .env("XDG_STATE_HOME", state_home("wrap-ts"));
    let seen = node.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "CONNECTED 1");

    // Idempotent: nothing to change, no new copy.
    let (code, out, _) = wrap(&[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("genieacs: unchanged, already wrapped with this policy and options"),
        "{out}"
    );
    assert_eq!(backups(&dir), 1);

    // unwrap gives the file back, byte for byte.
    let (code, _, err) = run(&[
        "unwrap".as_ref(),
        "claude-desktop".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
}

#[test]
fn wrap_refuses_what_it_cannot_do_safely() {
    let dir = temp_dir("wrap-refuse");
    let (config, original) = claude_config(&dir);
    let policy = root().join("policies/genieacs.json");
    // A policy that does not load.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"version":"2"}"#).unwrap();
    let (code, _, err) = run(&[
        "wrap".as_ref(),
        "claude-desktop".as_ref(),
        "--policy".as_ref(),
        bad.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    // A server the file does not have.
    let (code, _, err) = run(&[
        "wrap".as_ref(),
        "claude-desktop".as_ref(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "nope".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains(r#"no server "nope""#), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    // A file that does not parse is never touched (a trailing comma does:
    // VS Code and Cursor take it; a missing colon does not).
    let broken = "{\"mcpServers\": {\"a\": {\"command\" \"x\",}}}\n";
    std::fs::write(&config, broken).unwrap();
    let (code, _, err) = run(&[
        "wrap".as_ref(),
        "cursor".as_ref(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("line 1, column"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), broken);
    assert_eq!(backups(&dir), 0);
}

#[test]
fn codex_and_the_default_config_paths() {
    let home = temp_dir("wrap-home");
    let codex = home.join(".codex");
    std::fs::create_dir_all(&codex).unwrap();
    let toml = "# mine\n[mcp_servers.td]\ncommand = \"td-mcp-server\"\nargs = [\"--readonly\"]\nenv = { TD_API_KEY = \"k\" }\n";
    std::fs::write(codex.join("config.toml"), toml).unwrap();
    let cursor = home.join(".cursor");
    std::fs::create_dir_all(&cursor).unwrap();
    let json = r#"{"mcpServers": {"x": {"command": "x-mcp"}}}"#;
    std::fs::write(cursor.join("mcp.json"), json).unwrap();
    let policy = root().join("policies/permissive.json");
    for client in ["codex", "cursor"] {
        let out = toolwarden()
            .args(["wrap", client, "--policy"])
            .arg(&policy)
            .env("HOME", &home)
            .env_remove("CODEX_HOME")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wrapped = std::fs::read_to_string(codex.join("config.toml")).unwrap();
    assert!(
        wrapped.starts_with("# mine\n[mcp_servers.td]\ncommand = \""),
        "{wrapped}"
    );
    assert!(
        wrapped
            .contains("\"--\", \"td-mcp-server\", \"--readonly\"]\nenv = { TD_API_KEY = \"k\" }\n"),
        "{wrapped}"
    );
    let cursor_wrapped: Value =
        serde_json::from_str(&std::fs::read_to_string(cursor.join("mcp.json")).unwrap()).unwrap();
    assert_eq!(cursor_wrapped["mcpServers"]["x"]["args"][3], "x-mcp");
    for client in ["codex", "cursor"] {
        let out = toolwarden()
            .args(["unwrap", client])
            .env("HOME", &home)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
    assert_eq!(
        std::fs::read_to_string(codex.join("config.toml")).unwrap(),
        toml
    );
    assert_eq!(
        std::fs::read_to_string(cursor.join("mcp.json")).unwrap(),
        json
    );
}

#[test]
fn a_symlinked_config_stays_a_link_and_no_planted_link_is_followed() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = temp_dir("wrap-links");
    let (dotfiles, config_dir) = (dir.join("dotfiles"), dir.join("config"));
    std::fs::create_dir_all(&dotfiles).unwrap();
    std::fs::create_dir_all(&config_dir).unwrap();
    let (_, original) = claude_config(&dotfiles);
    let target = dotfiles.join("claude_desktop_config.json");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The config as a dotfile manager keeps it: a link into its repository.
    let config = config_dir.join("claude_desktop_config.json");
    symlink("../dotfiles/claude_desktop_config.json", &config).unwrap();
    // A repository that ships links where toolwarden writes: its temporary
    // files, and the copies it keeps, for the seconds to come.
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let mut planted = vec![
        dotfiles.join("claude_desktop_config.json.toolwarden-tmp"),
        config_dir.join("claude_desktop_config.json.toolwarden-tmp"),
    ];
    let now = std::time::SystemTime::now();
    for s in 0..10 {
        let stamp = humantime::format_rfc3339_seconds(now + std::time::Duration::from_secs(s))
            .to_string()
            .replace(':', "");
        planted.push(config_dir.join(format!("claude_desktop_config.json.toolwarden-{stamp}.bak")));
    }
    for link in &planted {
        symlink(&victim, link).unwrap();
    }
    let policy = root().join("policies/genieacs.json");
    let (code, out, err) = run(&[
        "wrap".as_ref(),
        "claude-desktop".as_ref(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&config).unwrap().is_symlink());
    let wrapped = std::fs::read_to_string(&target).unwrap();
    assert!(wrapped.contains("toolwarden"), "{wrapped}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&target), 0o600);
    // The copy kept is a file of its own, as private as the config.
    let backup = out
        .split("the previous file is kept as ")
        .nth(1)
        .map(|rest| PathBuf::from(rest.trim_end()))
        .unwrap();
    assert!(!std::fs::symlink_metadata(&backup).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    assert_eq!(mode(&backup), 0o600);
    let (code, _, err) = run(&[
        "unwrap".as_ref(),
        "claude-desktop".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(&config).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), original);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn wrap_carries_no_reload_pin_and_audit_required_and_a_rewrap_keeps_them() {
    let dir = temp_dir("wrap-options");
    let (config, _) = claude_config(&dir);
    let policy = root().join("policies/genieacs.json");
    let pins = dir.join("pins.json");
    let out = toolwarden()
        .args(["pin", "--out"])
        .arg(&pins)
        .arg("--")
        .arg(mock_server())
        .arg("--tools")
        .arg(root().join("examples/tools/genieacs.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let audit = dir.join("audit.jsonl");
    let wrap = |extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "wrap".as_ref(),
            "claude-desktop".as_ref(),
            "--policy".as_ref(),
            policy.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ];
        args.extend(extra);
        run(&args)
    };
    let options = |config: &Path| -> Vec<String> {
        let value: Value = serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
        value["mcpServers"]["genieacs"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .take_while(|a| a != "--")
            .skip(2)
            .collect()
    };
    let (code, _, err) = wrap(&[
        "--no-reload".as_ref(),
        "--pin".as_ref(),
        pins.as_os_str(),
        "--audit".as_ref(),
        audit.as_os_str(),
        "--audit-required".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let pins_path = pins.canonicalize().unwrap().to_str().unwrap().to_owned();
    let audit_path = audit.to_str().unwrap().to_owned();
    let carried = [
        "--audit",
        &audit_path,
        "--audit-required",
        "--pin",
        &pins_path,
        "--no-reload",
    ];
    assert_eq!(options(&config), carried);
    // Wrapped again without them (another policy, say): kept, and said.
    let (code, out, err) = wrap(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("genieacs: keeps the options it was wrapped with: --audit ")
            && out.contains("--no-reload (--replace-options drops them)"),
        "{out}"
    );
    assert_eq!(options(&config), carried);
    // Told otherwise, they go.
    let (code, _, err) = wrap(&["--replace-options".as_ref(), "--monitor".as_ref()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(options(&config), ["--monitor"]);
    // A pin file that does not load is refused before anything is written.
    std::fs::write(&pins, "not pins").unwrap();
    let (code, _, _) = wrap(&["--pin".as_ref(), pins.as_os_str()]);
    assert_eq!(code, 2);
    assert_eq!(options(&config), ["--monitor"]);
}
