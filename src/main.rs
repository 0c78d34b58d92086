//! toolwarden's entry point: arguments, logging, the policy, then one
//! session. The only place that exits.

use std::io::IsTerminal;

use clap::{CommandFactory, Parser};
use tracing_subscriber::EnvFilter;

use toolwarden::cli::{self, AuditCommand, Cli, Command, StateCommand};
use toolwarden::commands::check;
use toolwarden::plural::count;
use toolwarden::session::run;
use toolwarden::{policy, state};

fn main() {
    let cli = parse();
    let code = match cli.command {
        Some(Command::Check(args)) => {
            init_logging("warn");
            let (report, code) = check::run(&args);
            print_report(&report);
            code
        }
        Some(Command::State(command)) => {
            init_logging("warn");
            state_command(&command)
        }
        Some(Command::Import(args)) => import(&args.file),
        Some(Command::Test(args)) => test(&args),
        Some(Command::Wrap(args)) => {
            let change = wrap_change(&args);
            match change {
                Ok(change) => edit_config(args.client, &args.servers, &args.file, &change),
                Err(e) => {
                    eprintln!("toolwarden: {e:#}");
                    2
                }
            }
        }
        Some(Command::Audit(AuditCommand::Verify { files, key })) => audit_verify(&files, &key),
        Some(Command::Report(args)) => {
            init_logging("warn");
            let (report, code) = toolwarden::commands::report::run(&args);
            print_report(&report);
            code
        }
        Some(Command::Pin(args)) => {
            init_logging("warn");
            pin(&args)
        }
        Some(Command::Unwrap(args)) => edit_config(
            args.client,
            &args.servers,
            &args.file,
            &toolwarden::commands::wrap::Change::Unwrap,
        ),
        Some(Command::Approvals(command)) => {
            init_logging("warn");
            let (report, code) = toolwarden::inbox::cli::run(&command);
            print_report(&report);
            code
        }
        Some(Command::Init(args)) => {
            init_logging("warn");
            init(&args)
        }
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "toolwarden", &mut script);
            print_report(&String::from_utf8_lossy(&script));
            0
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => {
                    print_report(&String::from_utf8_lossy(&page));
                    0
                }
                Err(e) => {
                    eprintln!("toolwarden: cannot render the man page: {e}");
                    1
                }
            }
        }
        None => {
            init_logging(&cli.run.log_level);
            serve(&cli.run)
        }
    };
    // tokio's blocking stdin reader can hold up a runtime's shutdown: the
    // session has ended and everything is flushed, so leave now.
    std::process::exit(i32::from(code))
}

/// The command line, or exit 2 with what is wrong with it: said on stderr
/// and, since a client shows only "connection closed" for a server that
/// will not start, to its `initialize` too.
fn parse() -> Cli {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let refuse = |message: &str| -> ! {
        let code = toolwarden::session::startup::refuse(message, 2);
        std::process::exit(i32::from(code))
    };
    match Cli::try_parse_from(&argv) {
        Ok(cli) => {
            if cli.command.is_none() {
                if let Some(message) = cli::misplaced_option(&argv, &cli.run.command) {
                    refuse(&message);
                }
            }
            cli
        }
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            if let Some(message) = cli::mistyped_command(&argv) {
                refuse(&message);
            }
            // clap's own words, usage and tips included, then its first
            // line to the client.
            let _ = e.print();
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("a command line error");
            toolwarden::session::startup::tell_client(first.trim_start_matches("error: "));
            std::process::exit(2)
        }
    }
}

fn serve(args: &toolwarden::cli::RunArgs) -> u8 {
    return_large_buffers();
    let path = args.policy.as_deref().expect("clap requires --policy");
    let policy = match policy::load(path) {
        Ok(policy) => policy,
        Err(e) => return toolwarden::session::startup::refuse(&format!("{e:#}"), 2),
    };
    for warning in &policy.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("toolwarden: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run::session(args, policy)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            1
        }
    }
}

/// `toolwarden state show|reset`: exit code 0, 2 for a store that does not
/// open, 1 for one that cannot be read or a counter it does not hold.
fn state_command(command: &StateCommand) -> u8 {
    let store = match command {
        StateCommand::Show(store) | StateCommand::Reset { store, .. } => store,
    };
    let spec = match state::spec(store.state.as_deref()) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return 2;
        }
    };
    // Looking creates nothing: a store that is not there holds no
    // counters. (A new LMDB map reads those of `state.db` beside it: made
    // here as a session would make it, so that they are shown.)
    if let Some(path) = spec.file() {
        let old_counters =
            matches!(spec, state::Spec::Lmdb(_)) && path.with_file_name("state.db").exists();
        if !path.exists() && !old_counters {
            let none = format!("no counters yet: {} does not exist", path.display());
            return match command {
                StateCommand::Show(_) => {
                    print_report(&format!("{none}\n"));
                    0
                }
                StateCommand::Reset { counter, .. } => {
                    eprintln!("toolwarden: no counter {counter} to reset: {none}");
                    1
                }
            };
        }
    }
    let state = match state::State::open(spec, String::new(), String::new()) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return 2;
        }
    };
    let report = match command {
        StateCommand::Show(_) => state.show(),
        StateCommand::Reset {
            counter, identity, ..
        } => match state.reset(counter, identity.as_deref()) {
            Ok(state::Reset::Emptied(n)) => Ok(format!(
                "{}: {} of {counter} emptied\n",
                state.spec(),
                count(n, "bucket")
            )),
            Ok(state::Reset::NoSuchCounter { known }) => {
                let there = if known.is_empty() {
                    "it holds none".to_owned()
                } else {
                    format!("it holds {}", known.join(", "))
                };
                eprintln!(
                    "toolwarden: {}: no counter {counter} (a counter is there once a call \
                     charged it); {there}",
                    state.spec()
                );
                return 1;
            }
            Err(e) => Err(e),
        },
    };
    match report {
        Ok(report) => {
            print_report(&report);
            0
        }
        Err(e) => {
            eprintln!("toolwarden: {}: {}", state.spec(), e.0);
            1
        }
    }
}

/// A message of several MiB needs a buffer that size for a moment. glibc
/// would raise its mmap threshold after freeing one, serve the next from
/// the heap, and keep that memory for good; a fixed threshold gives every
/// large buffer back as soon as it is freed (docs/BENCHMARKS.md, memory).
fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// `toolwarden init [--out FILE] CMD...`: 0 with the policy written, 1 when
/// the server's tools cannot be listed, 2 when FILE cannot be written.
fn init(args: &toolwarden::cli::InitArgs) -> u8 {
    let (tools, server) = match server_tools(&args.command, &args.listing) {
        Ok(listed) => listed,
        Err(code) => return code,
    };
    // Neither file is written when one of them exists.
    for path in [&args.out, &args.pin].into_iter().flatten() {
        if path.exists() {
            eprintln!(
                "toolwarden: {}: exists; init never writes over a file",
                path.display()
            );
            return 2;
        }
    }
    if let Some(pin) = &args.pin {
        if let Err(e) = write_new(pin, &toolwarden::commands::pin::lock_file(&tools, &server)) {
            eprintln!("toolwarden: {}: {e}", pin.display());
            return 2;
        }
        eprintln!(
            "toolwarden: pinned {} in {}",
            count(tools.len(), "tool"),
            pin.display()
        );
    }
    let text = toolwarden::commands::init::policy_for(&tools, &server);
    let Some(out) = &args.out else {
        print_report(&text);
        return 0;
    };
    match write_new(out, &text) {
        Ok(()) => {
            eprintln!(
                "toolwarden: wrote {} ({}); review it, then `toolwarden check {} -- {}`",
                out.display(),
                count(tools.len(), "tool"),
                out.display(),
                server
            );
            0
        }
        Err(e) => {
            eprintln!("toolwarden: {}: {e}", out.display());
            2
        }
    }
}

/// The server's tools, listed once, and its command line as it may be
/// shown and stored (its secrets redacted).
fn server_tools(
    command: &[std::ffi::OsString],
    listing: &cli::ListArgs,
) -> Result<(Vec<check::Tool>, String), u8> {
    let tools = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(check::list_tools(command, listing)));
    let server: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match tools {
        Ok(tools) => Ok((tools, toolwarden::redact::command(&server))),
        Err(e) => {
            eprintln!("toolwarden: cannot list the server's tools: {e:#}");
            Err(1)
        }
    }
}

/// Writes `text` to a new file at `path`, never over an existing one.
fn write_new(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
}

/// `toolwarden pin --out|--diff|--update FILE CMD...`.
fn pin(args: &toolwarden::cli::PinArgs) -> u8 {
    use toolwarden::commands::pin;
    let (tools, server) = match server_tools(&args.command, &args.listing) {
        Ok(listed) => listed,
        Err(code) => return code,
    };
    if let Some(out) = &args.out {
        return match write_new(out, &pin::lock_file(&tools, &server)) {
            Ok(()) => {
                eprintln!(
                    "toolwarden: pinned {} in {}",
                    count(tools.len(), "tool"),
                    out.display()
                );
                0
            }
            Err(e) => {
                eprintln!("toolwarden: {}: {e}", out.display());
                2
            }
        };
    }
    let path = args
        .diff
        .as_ref()
        .or(args.update.as_ref())
        .expect("clap requires one");
    let read = match std::fs::read_to_string(path) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("toolwarden: {}: {e:#}", path.display());
            return 2;
        }
    };
    let lock = match pin::parse(&read) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("toolwarden: {}: {e:#}", path.display());
            return 2;
        }
    };
    let diff = pin::diff(&lock, &tools);
    if args.diff.is_some() {
        // An old file that matches still needs rewriting before --pin
        // takes it.
        let old = (lock.version != pin::VERSION).then(|| {
            format!(
                "{}: a version {} pin file; `toolwarden pin --update` rewrites it as version {}\n",
                path.display(),
                lock.version,
                pin::VERSION
            )
        });
        if diff.is_empty() && old.is_none() {
            print_report(&format!("{}: every tool matches its pin\n", path.display()));
            return 0;
        }
        print_report(&diff);
        print_report(old.as_deref().unwrap_or_default());
        return 1;
    }
    print_report(&diff);
    let text = pin::lock_file(&tools, &server);
    match toolwarden::commands::wrap::write_with_backup(path, &read, &text) {
        Ok(backup) => {
            print_report(&format!(
                "{}: updated; the previous file is kept as {}\n",
                path.display(),
                backup.display()
            ));
            0
        }
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            2
        }
    }
}

/// `toolwarden audit verify FILE...`: 0 every chain holds, 1 one is
/// broken, 2 a file cannot be read.
fn audit_verify(files: &[std::path::PathBuf], key_files: &[std::path::PathBuf]) -> u8 {
    use toolwarden::audit;
    let mut keys = Vec::new();
    for file in key_files {
        match audit::read_key(file) {
            Ok(key) => keys.push(key),
            Err(e) => {
                eprintln!("toolwarden: {}: {e}", file.display());
                return 2;
            }
        }
    }
    // The machine's key, when none is named; never created here: a log
    // written under a key is checked with that key or not at all.
    if key_files.is_empty() {
        if let Some(path) = audit::key_path() {
            match audit::read_key(&path) {
                Ok(key) => keys.push(key),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!("toolwarden: {}: {e}", path.display());
                    return 2;
                }
            }
        }
    }
    let mut read = Vec::new();
    for file in files {
        match std::fs::read(file) {
            Ok(content) => read.push((file.display().to_string(), content)),
            Err(e) => {
                eprintln!("toolwarden: {}: {e}", file.display());
                return 2;
            }
        }
    }
    let report = audit::verify::verify(&read, &keys);
    let mut out = String::new();
    for session in &report.unkeyed {
        out.push_str(&format!(
            "note: session {session} is chained without a key (written before keyed chains): \
             whoever could write the file could have written it\n"
        ));
    }
    for session in &report.unfinished {
        out.push_str(&format!(
            "note: session {session} has no end line: still running, ended by a crash, or its end was cut off\n"
        ));
    }
    // Each break is named; past the first few, a damaged file would
    // drown the ones that matter.
    const SHOWN: usize = 20;
    for broken in report.broken.iter().take(SHOWN) {
        out.push_str(&format!("broken: {broken}\n"));
    }
    if report.broken.len() > SHOWN {
        out.push_str(&format!(
            "broken: and {} more\n",
            report.broken.len() - SHOWN
        ));
    }
    let code = if report.broken.is_empty() {
        out.push_str(&format!(
            "ok: {}, {}, every chain holds\n",
            count(report.lines, "line"),
            count(report.sessions, "session")
        ));
        0
    } else {
        1
    };
    print_report(&out);
    code
}

/// What `wrap` puts in front: this binary and the policy, by absolute
/// paths, once the policy is known to load.
fn wrap_change(
    args: &toolwarden::cli::WrapArgs,
) -> anyhow::Result<toolwarden::commands::wrap::Change> {
    policy::load(&args.policy)?;
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
        toolwarden::commands::pin::Pins::load(pin, &[])?;
        options.push("--pin".to_owned());
        options.push(std::fs::canonicalize(pin)?.to_string_lossy().into_owned());
    }
    if args.no_reload {
        options.push("--no-reload".to_owned());
    }
    Ok(toolwarden::commands::wrap::Change::Wrap {
        toolwarden: toolwarden.to_string_lossy().into_owned(),
        policy: policy.to_string_lossy().into_owned(),
        options,
        replace_options: args.replace_options,
    })
}

/// `wrap` and `unwrap`: 0 done (or nothing to do), 2 for a file that
/// cannot be read, parsed or written.
fn edit_config(
    client: toolwarden::commands::wrap::Client,
    servers: &[String],
    file: &toolwarden::cli::ConfigFile,
    change: &toolwarden::commands::wrap::Change,
) -> u8 {
    let result = (|| -> anyhow::Result<()> {
        let path = match &file.config {
            Some(path) => path.clone(),
            None => client.default_config()?,
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let (new, report) = toolwarden::commands::wrap::edit(client, &text, servers, change)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        print_report(&toolwarden::commands::wrap::report(&report, file.dry_run));
        match new {
            None => print_report(&format!("{}: nothing to change\n", path.display())),
            Some(_) if file.dry_run => {
                print_report(&format!("{}: not written (--dry-run)\n", path.display()))
            }
            Some(new) => {
                let backup = toolwarden::commands::wrap::write_with_backup(&path, &text, &new)?;
                print_report(&format!(
                    "{}: written; the previous file is kept as {}\n",
                    path.display(),
                    backup.display()
                ));
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            2
        }
    }
}

/// `toolwarden test POLICY CASES`: 0 when every case passes, 1 when one
/// fails, 2 for a policy or cases file that does not load.
fn test(args: &toolwarden::cli::TestArgs) -> u8 {
    let policy = match policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            return 2;
        }
    };
    let file = std::fs::read_to_string(&args.cases)
        .map_err(|e| e.to_string())
        .and_then(|text| toolwarden::commands::cases::read(&text));
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            eprintln!("toolwarden: {}: {e}", args.cases.display());
            return 2;
        }
    };
    let report = toolwarden::commands::cases::run(&policy, &file);
    if args.json {
        let mut text = serde_json::to_string_pretty(&report).expect("a report serializes");
        text.push('\n');
        print_report(&text);
    } else {
        print_report(&report.text());
    }
    u8::from(report.failed > 0)
}

/// `toolwarden import FILE`: the converted policy on stdout, or why not
/// on stderr and exit code 2.
fn import(file: &std::path::Path) -> u8 {
    let yaml = match std::fs::read_to_string(file) {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("toolwarden: {}: cannot read it: {e}", file.display());
            return 2;
        }
    };
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match toolwarden::commands::import::import(&yaml, &source) {
        Ok(policy) => {
            print_report(&policy);
            0
        }
        Err(e) => {
            eprintln!("toolwarden: {}: {e}", file.display());
            2
        }
    }
}

/// `check`, `import`, `init`, `pin`, `test`, `wrap`, `audit`, `completions`
/// and `man` are commands for people, not a relay: their
/// report is their output. The one place toolwarden writes to stdout itself.
#[allow(clippy::print_stdout)]
fn print_report(report: &str) {
    print!("{report}");
}

/// Logs go to stderr: stdout carries protocol messages only. In colour
/// only on a terminal, and never with `NO_COLOR` set (no-color.org).
fn init_logging(level: &str) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The HTTP client's own log records are never shown, at any level:
    // at trace it dumps requests whole, `--header` values with them.
    let _ = tracing_log::LogTracer::builder()
        .ignore_crate("ureq")
        .init();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}
