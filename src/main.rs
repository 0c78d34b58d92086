//! toolwarden's entry point: the arguments, logging, then one command's
//! `run` (or a session); the only place that writes a report to stdout,
//! and the only place that exits.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use toolwarden::cli::{self, Cli, Command};
use toolwarden::commands;
use toolwarden::session;

fn main() {
    let cli = parse();
    // Logs (stderr, at warn) for the commands that start a server, open a
    // store or read audit logs; the others say what they have to say
    // themselves.
    let code = match cli.command {
        Some(Command::Check(args)) => {
            init_logging("warn");
            print_report(commands::check::run(&args))
        }
        Some(Command::State(command)) => {
            init_logging("warn");
            print_report(commands::state::run(&command))
        }
        Some(Command::Import(args)) => print_report(commands::import::run(&args)),
        Some(Command::Test(args)) => print_report(commands::cases::run(&args)),
        Some(Command::Wrap(args)) => print_report(commands::wrap::run(&args)),
        Some(Command::Unwrap(args)) => print_report(commands::unwrap::run(&args)),
        Some(Command::Audit(command)) => print_report(commands::audit::run(&command)),
        Some(Command::Report(args)) => {
            init_logging("warn");
            print_report(commands::report::run(&args))
        }
        Some(Command::Pin(args)) => {
            init_logging("warn");
            print_report(commands::pin::run(&args))
        }
        Some(Command::Approvals(command)) => {
            init_logging("warn");
            print_report(commands::approvals::run(&command))
        }
        Some(Command::Init(args)) => {
            init_logging("warn");
            print_report(commands::init::run(&args))
        }
        Some(Command::Completions { shell }) => print_report(commands::completions::run(shell)),
        Some(Command::Man) => print_report(commands::man::run()),
        Some(Command::Login {
            url,
            oauth_client_id,
        }) => {
            init_logging("warn");
            print_report(commands::login::run(&url, oauth_client_id.as_deref()))
        }
        Some(Command::Logout { url }) => print_report(commands::login::logout(&url)),
        None => {
            init_logging(&cli.run.log_level);
            session::run::serve(&cli.run)
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

/// A command's report to stdout, and its exit code: the commands are for
/// people, not a relay, and their report is their output. The one place
/// toolwarden writes to stdout itself (a session writes the protocol
/// through its own writer).
#[allow(clippy::print_stdout)]
fn print_report((report, code): (String, u8)) -> u8 {
    print!("{report}");
    code
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
