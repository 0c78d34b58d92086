//! The commands of README.md and docs/*.md, run as a reader would run
//! them, so that a doc and the behaviour it describes cannot drift apart.
//!
//! Every command in a fenced block is either run here, in a sandbox, and
//! the output the doc shows compared with what it prints, or listed in
//! [`LISTED`] with the test that covers it or why it cannot run here.
//!
//! How a doc shows commands:
//! - In a block with lines that start with `$ `, each such line is a
//!   command, and the lines up to the next `$ ` are its output. With no
//!   output shown, the command must succeed (exit code 0); with output
//!   shown, it must print that (stdout and stderr together), whatever its
//!   exit code. A line `...` in the output stands for any number of lines,
//!   a line ending in `...` for any line that starts with the text before.
//! - In a block without an info string (or `sh`, `shell`, `bash`), every
//!   line is a command that must succeed: `#` lines are comments, and a
//!   line ending in `\`, an indented line and `done`/`fi` continue the one
//!   before.
//! - Any other block (`json`, `text`...) holds no command: mark output or
//!   a protocol exchange shown on its own as `text`.
//!
//! The sandbox: one per doc, the doc's commands in order, in bash, with a
//! HOME of its own (no XDG_* variables), the current directory a temp
//! directory with `policies/` and `examples/` of the repository in it,
//! `toolwarden` the binary under test, the servers the docs name mapped
//! to the pinned local ones ([`MAPPED`], undone in the output), and the
//! files a reader would have written ([`FIXTURES`]). `export NAME=VALUE`
//! sets NAME for the doc's later commands.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::{mock_server, npm_bin, root, temp_dir, toolwarden_bin, PATIENCE};

/// Commands that are not run here, each with the test that covers it or
/// why it cannot run: long builds, benchmarks, a real client or account.
/// The key is the command as the doc writes it (continuation lines joined
/// with single spaces).
const LISTED: &[(&str, &str)] = &[
    (
        "toolwarden login https://mcp.example.com/mcp",
        "needs a server with OAuth and a browser; remote::oauth_tokens_from_login_are_refreshed_once_for_two_sessions_and_a_forgotten_login_is_redone",
    ),
    (
        "toolwarden completions zsh > ~/.zfunc/_toolwarden # with fpath+=(~/.zfunc) in ~/.zshrc",
        "writes into a directory the reader makes; first_run::completions_and_the_man_page_are_printed",
    ),
    (
        "toolwarden completions fish > ~/.config/fish/completions/toolwarden.fish",
        "writes into a directory the reader makes; first_run::completions_and_the_man_page_are_printed",
    ),
    (
        "toolwarden check --timeout 2m --client-capabilities '{}' policy.json -- npx -y some-slow-server",
        "a stand-in server; init::a_slow_server_is_said_to_be_waited_for_and_timeout_sets_how_long",
    ),
    (
        "toolwarden state reset retires",
        "needs the counters of earlier sessions; state::state_reset_of_an_unknown_counter_names_the_counters_there",
    ),
    (
        "toolwarden approvals list",
        "needs a session holding a call; approvals::a_held_call_is_approved_from_another_process",
    ),
    (
        "toolwarden approvals approve xjd7kd44",
        "needs a session holding a call; approvals::a_held_call_is_approved_from_another_process",
    ),
    (
        "toolwarden approvals serve",
        "runs until stopped; approvals::page::the_page_decides_held_calls_only_with_its_token_and_from_its_own_forms",
    ),
    (
        "toolwarden approvals watch",
        "needs a session holding a call and keys typed; approvals::watch_denies_a_held_call_with_the_reason_typed",
    ),
    (
        "cargo build --workspace && ./target/debug/toolwarden --policy policies/fractera.json --state memory -- ./target/debug/mock_server --tools examples/tools/fractera.json < examples/sessions/fractera.jsonl",
        "a build; the session itself is stdio_kinds::the_readme_session_runs_from_a_file",
    ),
    ("tests/setup && cargo test", ".ci/run runs it last"),
    ("cargo dist", ".ci/run builds it and runs the end-to-end tests on it"),
    ("cargo install --path .", "a release build of some minutes"),
    (
        "claude mcp add runpod -- toolwarden --policy /home/me/policies/runpod.json -- npx -y @runpod/mcp-server@4.0.0",
        "needs Claude Code",
    ),
    (
        "jq -c 'select(.event == \"decision\") | {tool, decision, enforced}' ~/tw-audit.jsonl",
        "reads the log of a client's session; first_run::monitor_mode_decides_logs_and_audits_but_refuses_nothing checks these fields",
    ),
    (
        "toolwarden pin --diff ~/policies/runpod.pin.json -- npx -y @runpod/mcp-server@4.0.0",
        "needs a server whose tools changed; pin::a_tool_changed_since_it_was_pinned_is_withheld_and_refused checks this output",
    ),
    (
        "toolwarden state show",
        "needs counters spent moments before; state::state_show_and_reset",
    ),
    (
        "toolwarden state reset retries --identity ci",
        "state::state_show_and_reset",
    ),
    (
        "toolwarden audit verify ~/tw-audit.jsonl.1 ~/tw-audit.jsonl",
        "needs a log of many sessions; audit::audit_verify_passes_a_real_log_and_names_the_line_that_was_touched",
    ),
    (
        "toolwarden audit verify edited.jsonl",
        "audit::audit_verify_passes_a_real_log_and_names_the_line_that_was_touched",
    ),
    (
        "toolwarden audit verify --key their-audit.key copied.jsonl",
        "audit::audit_verify_checks_a_log_from_another_machine_with_its_key",
    ),
    // docs/BENCHMARKS.md: minutes of CPU each, run by hand.
    ("cargo bench --bench hot_path", "a benchmark"),
    ("cargo bench --bench shared", "a benchmark"),
    ("cargo bench --bench e2e -- --server mock", "a benchmark"),
    (
        "tests/setup && cargo bench --bench e2e -- --server everything",
        "a benchmark",
    ),
    (
        "tests/setup && npm ci --prefix benches/npm && cargo bench --bench e2e -- --server everything-http --rounds 5",
        "a benchmark of several minutes; its figures are in docs/BENCHMARKS.md",
    ),
    (
        "BENCH_TOOLWARDEN=$PWD/target/release/toolwarden cargo bench --bench e2e",
        "a benchmark",
    ),
    (
        "BENCH_RELAY=$PWD/target/release/examples/tokio_relay cargo bench --bench e2e -- --server everything",
        "a benchmark",
    ),
    (
        "cargo dist && cargo build --release --bin toolwarden && cargo build --release -p mock_server",
        "release builds for benches/memory.sh",
    ),
    ("benches/memory.sh", "a measurement of the release builds"),
    (
        "cargo dist && cargo build --release -p mock_server && python3 dist/code-order.py && cargo dist",
        "two static builds around a callgrind profile (minutes); memory::the_static_build_holds_its_bounds_with_a_4_mib_message checks what the layout it writes keeps resident",
    ),
    (
        "benches/memory.sh target/release/toolwarden",
        "a measurement of the release builds",
    ),
    (
        "cargo dist && cargo build --release -p mock_server",
        "release builds for the benchmarks",
    ),
    (
        "echo '{\"version\":\"1\",\"default\":\"deny\",\"tools\":{\"echo\":{\"limits\":[{\"window\":\"second\",\"max\":1000000}]}}}' > /tmp/policy.json",
        "the benchmarks' policy",
    ),
    (
        "for n in 1000 3000; do N=$n python3 benches/one_at_a_time.py valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n ./target/x86_64-unknown-linux-gnu/dist/toolwarden --policy /tmp/policy.json --log-level error -- ./target/release/mock_server --tools examples/tools/bench.json done",
        "a benchmark",
    ),
    (
        "N=5000 taskset -c 1 python3 benches/one_at_a_time.py taskset -c 0 ./target/x86_64-unknown-linux-gnu/dist/toolwarden --policy /tmp/policy.json --log-level error -- tests/npm/node_modules/.bin/mcp-server-everything stdio",
        "a benchmark",
    ),
    (
        "N=20000 taskset -c 1 python3 benches/one_at_a_time.py taskset -c 1 ./target/x86_64-unknown-linux-gnu/dist/toolwarden --policy /tmp/policy.json --log-level error -- tests/npm/node_modules/.bin/mcp-server-everything stdio",
        "a benchmark",
    ),
];

/// The programs a doc command may start with to be run here; any other
/// must be listed (a build, a benchmark or another program's setup has no
/// place in a test).
const RUNNABLE: &[&str] = &[
    "toolwarden",
    "./target/debug/toolwarden",
    "install",
    "jq",
    "printf",
    "export",
    "mkdir",
];

/// Text of the docs that means a program this machine has under another
/// name: replaced in each command, and back in its output.
fn mapped() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("npx -y @runpod/mcp-server@4.0.0", npm_bin("runpod-mcp")),
        ("./target/debug/toolwarden", toolwarden_bin()),
        (
            "target/x86_64-unknown-linux-gnu/dist/toolwarden",
            toolwarden_bin(),
        ),
        ("./target/debug/mock_server", mock_server()),
        ("./target/release/mock_server", mock_server()),
    ]
}

/// The docs' own name for the sandbox's home, in their output.
const DOC_HOME: &str = "/home/me";

/// Where a fixture's text comes from.
enum Text {
    Literal(&'static str),
    /// The doc's fenced block that starts with this text.
    Block(&'static str),
}

/// Files a reader of a doc has written by the time they run a command:
/// the doc, the file's path (`~/` is the sandbox's home, anything else its
/// current directory), its text, and the text of the first command that
/// needs it (the file is written just before that command runs).
struct Fixture {
    doc: &'static str,
    path: &'static str,
    text: Text,
    before: &'static str,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        doc: "README.md",
        path: "~/.config/Claude/claude_desktop_config.json",
        before: "toolwarden wrap claude-desktop",
        text:
        Text::Literal(
            r#"{"mcpServers": {"runpod": {"command": "npx", "args": ["-y", "@runpod/mcp-server@4.0.0"], "env": {"RUNPOD_API_KEY": "..."}}}}"#,
        ),
    },
    Fixture {
        doc: "README.md",
        path: "~/policies/runpod.cases.json",
        before: "runpod.cases.json",
        text: Text::Literal(
            r#"{"cases": [
  {"name": "ten retries pass", "tool": "retry-job", "arguments": {"endpointId": "ep-1", "jobId": "job-42"}, "repeat": 10, "expect": "allowed"},
  {"name": "the eleventh waits", "tool": "retry-job", "arguments": {"endpointId": "ep-1", "jobId": "job-42"}, "expect": "rate_limited"}
]}"#,
        ),
    },
    Fixture {
        doc: "README.md",
        path: "my-cases.json",
        before: "my-cases.json",
        text: Text::Block("{\"cases\": ["),
    },
    Fixture {
        doc: "docs/policy.md",
        path: "typo.json",
        before: "typo.json",
        text: Text::Literal(
            r#"{"version": "1", "tools": {"retry_task": {"arguments": {"type": "object", "properties": {"task_id": {"type": "string"}}, "requried": ["task_id"]}}}}"#,
        ),
    },
    Fixture {
        doc: "docs/policy.md",
        path: "odd.yaml",
        before: "odd.yaml",
        text: Text::Literal(
            "version: \"1\"\ntools:\n  t:\n    rules:\n      - name: at most 3\n        conditions:\n          - { path: state.t.n, op: gt, value: 3 }\n        state: { counter: n, window: day }\n",
        ),
    },
];

/// One fenced block of a doc.
struct Block {
    /// The line of its opening fence, from 1.
    line: usize,
    info: String,
    lines: Vec<String>,
}

/// One command of a doc, and the output shown for it, if any.
struct DocCommand {
    line: usize,
    text: String,
    output: Option<Vec<String>>,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Block)> = None;
    for (n, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let block = Block {
                        line: n + 1,
                        info: info.trim().to_owned(),
                        lines: Vec::new(),
                    };
                    open = Some((indent, block));
                }
            }
            Some((_, block)) if trimmed.starts_with("```") => blocks.push(block),
            Some((fence, mut block)) => {
                let cut = line.len() - line.trim_start().len();
                block.lines.push(line[cut.min(fence)..].to_owned());
                open = Some((fence, block));
            }
        }
    }
    blocks
}

/// The commands of a block, or none for a block that holds none.
fn commands(block: &Block) -> Vec<DocCommand> {
    let mut out: Vec<DocCommand> = Vec::new();
    if block.lines.iter().any(|l| l.starts_with("$ ")) {
        let mut continued = false;
        for (i, line) in block.lines.iter().enumerate() {
            if let Some(text) = line.strip_prefix("$ ") {
                out.push(DocCommand {
                    line: block.line + 1 + i,
                    text: text.to_owned(),
                    output: None,
                });
            } else if let Some(last) = out.last_mut().filter(|_| continued) {
                last.text.push('\n');
                last.text.push_str(line);
            } else if let Some(last) = out.last_mut() {
                last.output.get_or_insert_with(Vec::new).push(line.clone());
            }
            continued = line.ends_with('\\');
        }
        return out;
    }
    if !matches!(block.info.as_str(), "" | "sh" | "shell" | "bash") {
        return out;
    }
    let mut continued = false;
    for (i, line) in block.lines.iter().enumerate() {
        let continues = continued
            || line.starts_with(char::is_whitespace)
            || matches!(line.trim(), "done" | "fi");
        continued = line.ends_with('\\');
        if line.trim().is_empty() || line.starts_with('#') {
            continued = false;
        } else if let Some(last) = out.last_mut().filter(|_| continues) {
            last.text.push('\n');
            last.text.push_str(line);
        } else {
            out.push(DocCommand {
                line: block.line + 1 + i,
                text: line.clone(),
                output: None,
            });
        }
    }
    out
}

/// A command as [`LISTED`] names it: continuation lines joined with
/// single spaces.
fn key(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| *word != "\\")
        .collect::<Vec<_>>()
        .join(" ")
}

/// The docs this test reads, by path from the repository's root.
fn docs() -> Vec<String> {
    let mut docs = vec!["README.md".to_owned()];
    let mut more: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

struct Sandbox {
    home: PathBuf,
    work: PathBuf,
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// The doc's fixtures not written yet, with their text.
    fixtures: Vec<(&'static Fixture, String)>,
}

impl Sandbox {
    fn new(doc: &str, blocks: &[Block]) -> Sandbox {
        let dir = temp_dir(&format!("docs-{}", doc.replace('/', "-")));
        let (home, work, bin) = (dir.join("home"), dir.join("work"), dir.join("bin"));
        for d in [&home, &work, &bin] {
            std::fs::create_dir_all(d).unwrap();
        }
        for shared in ["policies", "examples"] {
            std::os::unix::fs::symlink(root().join(shared), work.join(shared)).unwrap();
        }
        std::os::unix::fs::symlink(toolwarden_bin(), bin.join("toolwarden")).unwrap();
        let mut fixtures = Vec::new();
        for fixture in FIXTURES.iter().filter(|f| f.doc == doc) {
            let text = match &fixture.text {
                Text::Literal(text) => text.to_string(),
                Text::Block(start) => blocks
                    .iter()
                    .map(|b| b.lines.join("\n") + "\n")
                    .find(|b| b.starts_with(start))
                    .unwrap_or_else(|| {
                        panic!("{doc}: FIXTURES wants a block starting {start:?}; there is none")
                    }),
            };
            fixtures.push((fixture, text));
        }
        Sandbox {
            home,
            work,
            bin,
            env: Vec::new(),
            fixtures,
        }
    }

    /// Writes the fixtures that `command` is the first to need.
    fn write_fixtures(&mut self, command: &str) {
        let (due, later) = std::mem::take(&mut self.fixtures)
            .into_iter()
            .partition(|(f, _)| command.contains(f.before));
        self.fixtures = later;
        for (fixture, text) in due {
            let path = self.path(fixture.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    fn path(&self, doc_path: &str) -> PathBuf {
        match doc_path.strip_prefix("~/") {
            Some(rest) => self.home.join(rest),
            None => self.work.join(doc_path),
        }
    }

    /// Runs one command; its exit code and what it printed, with the
    /// sandbox's paths back as the docs write them.
    fn run(&mut self, text: &str) -> Result<(i32, String), String> {
        if let Some((name, value)) = text
            .strip_prefix("export ")
            .and_then(|rest| rest.split_once('='))
        {
            self.env.push((name.to_owned(), value.to_owned()));
            return Ok((0, String::new()));
        }
        self.write_fixtures(text);
        let mapped = mapped();
        let mut script = text.to_owned();
        for (doc, local) in &mapped {
            script = script.replace(doc, local.to_str().unwrap());
        }
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("exec 2>&1\n{script}"))
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, _) in std::env::vars() {
            if name.starts_with("XDG_")
                || name.starts_with("TOOLWARDEN_")
                || name.starts_with("RUST_LOG")
                || name == "CODEX_HOME"
            {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().map_err(|e| format!("bash: {e}"))?;
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut out).ok();
            out
        });
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("still running after {PATIENCE:?}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut output = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
        let mut back: Vec<(String, &str)> = mapped
            .iter()
            .map(|(doc, local)| (local.display().to_string(), *doc))
            .collect();
        back.push((self.home.display().to_string(), DOC_HOME));
        back.push((self.work.display().to_string() + "/", ""));
        back.sort_by_key(|(local, _)| std::cmp::Reverse(local.len()));
        for (local, doc) in back {
            output = output.replace(&local, doc);
        }
        Ok((status.code().unwrap_or(-1), output))
    }
}

/// Whether `printed` is what the doc shows, with its `...` lines.
fn matches(shown: &[String], printed: &[&str]) -> bool {
    match shown.split_first() {
        None => printed.is_empty(),
        Some((line, rest)) if line.trim() == "..." => {
            (0..=printed.len()).any(|skip| matches(rest, &printed[skip..]))
        }
        Some((line, rest)) => printed.split_first().is_some_and(|(first, more)| {
            let fits = match line.strip_suffix("...") {
                Some(start) => first.starts_with(start),
                None => first == line,
            };
            fits && matches(rest, more)
        }),
    }
}

/// Runs the commands of one doc; a sentence for each that failed.
fn check_doc(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    let blocks = blocks(&text);
    let mut sandbox = Sandbox::new(doc, &blocks);
    let mut failures = Vec::new();
    for command in blocks.iter().flat_map(commands) {
        let key = key(&command.text);
        let place = format!("{doc}:{}", command.line);
        if LISTED.iter().any(|(listed, _)| *listed == key) {
            continue;
        }
        // The program, after any `NAME=VALUE` words.
        let program = key
            .split_whitespace()
            .find(|word| !word.contains('='))
            .unwrap_or_default();
        if !RUNNABLE.contains(&program) {
            failures.push(format!(
                "{place}: `{key}` starts with `{program}`, which the docs test does not run \
                 (it runs {RUNNABLE:?}): add it to LISTED in tests/it/docs.rs with the test \
                 that covers it, or why it cannot run here"
            ));
            continue;
        }
        let (code, printed) = match sandbox.run(&command.text) {
            Ok(done) => done,
            Err(e) => {
                failures.push(format!("{place}: `{key}`: {e}"));
                continue;
            }
        };
        let printed_lines: Vec<&str> = printed.lines().collect();
        match &command.output {
            None if code != 0 => failures.push(format!(
                "{place}: `{key}` exited with {code} (a command shown without output must \
                 succeed); it printed:\n{printed}"
            )),
            Some(shown) if !matches(shown, &printed_lines) => failures.push(format!(
                "{place}: `{key}` printed (exit code {code}):\n{printed}\nbut the doc shows:\n{}\n\
                 (fix the doc or the code; `...` stands for lines that vary)",
                shown.join("\n")
            )),
            _ => {}
        }
    }
    for (fixture, _) in &sandbox.fixtures {
        failures.push(format!(
            "{doc}: FIXTURES has {}, for a command with `{}`, which no command of {doc} has",
            fixture.path, fixture.before
        ));
    }
    failures
}

#[test]
fn every_doc_command_runs_as_shown_or_is_listed() {
    let runs: Vec<_> = docs()
        .into_iter()
        .map(|doc| std::thread::spawn(move || check_doc(&doc)))
        .collect();
    let failures: Vec<String> = runs
        .into_iter()
        .flat_map(|run| run.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "doc commands that do not do what the docs say: {}\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_listed_command_is_in_a_doc() {
    let shown: Vec<String> = docs()
        .iter()
        .flat_map(|doc| {
            let text = std::fs::read_to_string(root().join(doc)).unwrap();
            blocks(&text)
                .iter()
                .flat_map(commands)
                .map(|c| key(&c.text))
                .collect::<Vec<_>>()
        })
        .collect();
    let stale: Vec<&str> = LISTED
        .iter()
        .map(|(listed, _)| *listed)
        .filter(|listed| !shown.iter().any(|s| s == listed))
        .collect();
    assert!(
        stale.is_empty(),
        "LISTED in tests/it/docs.rs names commands that no doc shows any more \
         (remove them, or update them to the doc's new text):\n{}",
        stale.join("\n")
    );
}

#[test]
fn output_placeholders_stand_for_what_varies() {
    let shown = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(matches(&shown(&["a", "...", "d"]), &["a", "b", "c", "d"]));
    assert!(matches(&shown(&["a", "...", "d"]), &["a", "d"]));
    assert!(matches(
        &shown(&["  ok: 3 tools, ..."]),
        &["  ok: 3 tools, x, y"]
    ));
    assert!(!matches(&shown(&["a", "b"]), &["a", "c"]));
    assert!(!matches(&shown(&["a"]), &["a", "b"]));
    let block = Block {
        line: 1,
        info: String::new(),
        lines: shown(&[
            "# a comment",
            "for n in 1 2; do",
            "  echo $n \\",
            "    more",
            "done",
            "jq . x",
        ]),
    };
    let found: Vec<String> = commands(&block).iter().map(|c| key(&c.text)).collect();
    assert_eq!(found, ["for n in 1 2; do echo $n more done", "jq . x"]);
}
