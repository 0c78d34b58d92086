//! One session: start the server, relay until one side ends or a signal
//! comes, then stop in order and say which exit code toolwarden should
//! return.
//!
//! The stop is the same whatever started it: stop reading the client, close
//! the server's stdin, keep relaying what the server still writes, wait for
//! it to exit (SIGTERM, then SIGKILL, if it does not), answer the client's
//! requests that are left, and exit with the server's status.

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::audit::{self, Audit};
use crate::cli::RunArgs;
use crate::policy::Policy;
use crate::session::blocking;
use crate::session::memory;
use crate::session::relay::{Relay, Settings};
use crate::session::reload;
use crate::session::startup;
use crate::state::{self, State};
use crate::telemetry::Telemetry;
use crate::upstream::{self, Stopped, Upstream};

/// How long the server's output may stay open after the server exited (a
/// grandchild may hold it) before its process group is killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What ended the relaying.
#[derive(Debug)]
enum Ended {
    /// The client pump ended: the client closed its output, or (not
    /// `cleanly`) a write to the server failed, which has exited.
    ClientClosed {
        cleanly: bool,
    },
    ServerClosed,
    ServerExited,
    Signal(i32),
}

/// `toolwarden --policy FILE -- CMD...`: the policy loaded, then one
/// session on a runtime of its own; toolwarden's exit code (2 for a policy
/// that does not load, said to the client's `initialize` too; 1 when the
/// session cannot run). Unlike a command's, a session's stdout is the
/// protocol: it has no report to return.
pub fn serve(args: &RunArgs) -> u8 {
    memory::return_large_buffers();
    let path = args.policy.as_deref().expect("clap requires --policy");
    let policy = match crate::policy::load(path) {
        Ok(policy) => policy,
        Err(e) => return startup::refuse(&format!("{e:#}"), 2),
    };
    for warning in &policy.warnings {
        warn!("{}: {warning}", path.display());
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
    match runtime.block_on(session(args, policy)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toolwarden: {e:#}");
            1
        }
    }
}

/// The state store `--state` names, for this policy's namespace.
fn open_state(args: &RunArgs) -> anyhow::Result<State> {
    let spec = state::spec(args.store.state.as_deref())?;
    State::open(spec, namespace(args), args.identity.clone())
}

/// `--state-namespace`, or the policy file's name without its extension:
/// the same for the same policy on every machine and after every edit (a
/// counter's own definition is in its key: see `Counter::definition`),
/// and apart for policies of different names. Monitoring always counts in
/// a namespace of its own (NAME/monitor: no file's name, and no
/// `--state-namespace`, holds a `/`), so it never spends the budgets of
/// the processes that enforce the same policy, nor of any other.
fn namespace(args: &RunArgs) -> String {
    let name = args.state_namespace.clone().unwrap_or_else(|| {
        args.policy
            .as_deref()
            .and_then(|p| p.file_stem())
            .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned())
    });
    if args.monitor {
        format!("{name}/monitor")
    } else {
        name
    }
}

/// Runs one session; returns toolwarden's exit code.
pub async fn session(args: &RunArgs, policy: Policy) -> anyhow::Result<u8> {
    let session_id = audit::random_id();
    // A log that cannot be opened stops toolwarden before the server starts.
    let audit = match &args.audit {
        Some(path) => match Audit::open(
            path,
            args.audit_required,
            session_id.clone(),
            args.identity.clone(),
        ) {
            Ok(audit) => audit,
            Err(e) => return Ok(startup::refuse(&format!("{e:#}"), 2)),
        },
        None => Audit::off(session_id.clone(), args.identity.clone()),
    };
    let pins = match &args.pin {
        Some(path) => match crate::commands::pin::Pins::load(path, &args.command) {
            Ok(pins) => Some(pins),
            Err(e) => return Ok(startup::refuse(&format!("{e:#}"), 2)),
        },
        None => None,
    };
    // A store that cannot be opened stops toolwarden before the server
    // starts, as a bad policy does.
    let state = match open_state(args) {
        Ok(state) => state,
        Err(e) => return Ok(startup::refuse(&format!("{e:#}"), 2)),
    };
    // The inbox is in the state store, which is open now.
    let inbox = match crate::inbox::Inbox::open(state.spec()) {
        Ok(inbox) => inbox,
        Err(e) => return Ok(startup::refuse(&format!("{e:#}"), 2)),
    };
    // OTLP export only when --otlp or OTEL_* name a receiver.
    let telemetry =
        match crate::telemetry::Config::read(args.otlp.as_deref(), |v| std::env::var(v).ok()) {
            Ok(config) => config,
            Err(e) => return Ok(startup::refuse(&format!("{e:#}"), 2)),
        };
    // With the audit log on stderr, the server's stderr is labelled, so
    // that it cannot write an audit record.
    let stderr = if args.audit.as_deref() == Some(std::path::Path::new("-")) {
        upstream::ServerStderr::Labelled
    } else {
        upstream::ServerStderr::Inherit
    };
    let options = upstream::Options {
        stderr,
        remote: &args.remote,
        max_message: args.max_message_bytes,
    };
    let (mut server, server_pipes) = match Upstream::start(&args.command, &options) {
        Ok(started) => started,
        Err(e) => return Ok(startup::refuse(&e.message, e.exit_code)),
    };
    let signaller = server.signaller();
    info!(identity = %args.identity, session = %session_id, "session starts");
    if args.monitor {
        warn!("monitor mode: every call is decided, logged and relayed; nothing is refused");
    }
    crate::session::notify::enable(!args.no_notify);
    let telemetry = match telemetry
        .map(|c| c.with_session(&session_id))
        .map(Telemetry::start)
    {
        Some(Err(e)) => return Ok(startup::refuse(&format!("the OTLP exporter: {e}"), 2)),
        started => started.and_then(Result::ok),
    };
    let settings = Settings {
        telemetry,
        max_message: args.max_message_bytes,
        approval_timeout: args.approval_timeout,
        audit,
        state,
        monitor: args.monitor,
        pins,
        approval: args.approval,
        approval_hold: args.approval_hold,
        inbox,
        server_label: crate::redact::command(
            &args
                .command
                .iter()
                .map(|w| w.to_string_lossy())
                .collect::<Vec<_>>(),
        ),
    };
    // The pumps read and write with blocking calls, each on a thread of
    // its own (see blocking.rs); the rest stays on this event loop.
    let pipes = (|| -> io::Result<_> {
        let client_in = blocking::Fd::stdio(io::stdin())?;
        let client_out = blocking::Fd::stdio(io::stdout())?;
        // Pipes of 1 MiB: a large message crosses in a few writes.
        upstream::child::enlarge_pipe(&client_in);
        upstream::child::enlarge_pipe(&client_out);
        Ok((client_in, client_out))
    })();
    let (client_in, client_out) = match pipes {
        Ok(pipes) => pipes,
        Err(e) => {
            tracing::error!("cannot set up the session's pipes: {e}");
            signaller.kill();
            return Ok(1);
        }
    };
    let (server_in, server_out) = (server_pipes.to_server, server_pipes.from_server);
    let server_in = blocking::ServerInput::new(server_in);
    let relay = Arc::new(Relay::new(policy, settings, Box::new(client_out)));
    // Hot reload, unless --no-reload.
    if let Some(path) = args.policy.as_deref().filter(|_| !args.no_reload) {
        if let Err(e) = reload::start(path, Arc::clone(&relay)) {
            warn!("the policy file cannot be watched, so changes to it need a restart: {e}");
        }
    }
    let mut signals = Signals::new()?;

    let mut client_pump = blocking::spawn("client-pump", {
        let relay = Arc::clone(&relay);
        let server_in = server_in.clone();
        move || relay.client_pump(client_in, server_in)
    })?;
    let mut server_pump = blocking::spawn("server-pump", {
        let relay = Arc::clone(&relay);
        move || relay.server_pump(server_out)
    })?;
    let mut server_done = false;
    let mut exit_status = None;
    memory::release_start_up_pages();

    let ended = tokio::select! {
        result = &mut client_pump => {
            let cleanly = matches!(result, Ok(Ok(())));
            report("reading the client", result);
            Ended::ClientClosed { cleanly }
        }
        result = &mut server_pump => {
            server_done = true;
            report("relaying the server's output", result);
            Ended::ServerClosed
        }
        status = server.wait() => {
            exit_status = Some(status?);
            Ended::ServerExited
        }
        signal = signals.recv() => Ended::Signal(signal),
    };
    debug!(?ended, "relaying ends");
    // A signal to toolwarden goes to the server's process group at once,
    // as init shims do: the server stops as fast as it would alone.
    let mut first_signal = None;
    if let Ended::Signal(signal) = ended {
        signaller.send(signal);
        first_signal = Some(signal);
    }
    // Stop reading the client, and close the server's stdin: its end of
    // input is the first step of the stop. (A client pump blocked in a read
    // stays so until toolwarden exits; it forwards nothing more.)
    relay.stop_reading_client();
    server_in.close();

    // Let the server finish: what it still writes reaches the client.
    let (status, stopped) = {
        let mut stop = pin!(server.stop(args.close_timeout, args.term_timeout));
        let mut outcome = None;
        let mut drain_deadline = None;
        loop {
            tokio::select! {
                result = &mut stop, if outcome.is_none() => {
                    outcome = Some(result?);
                    drain_deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                result = &mut server_pump, if !server_done => {
                    server_done = true;
                    report("relaying the server's output", result);
                }
                _ = sleep_until(drain_deadline), if !server_done => {
                    warn!("the server exited but its output is still open: killing its process group");
                    signaller.kill();
                    // A grandchild outside the group may hold the pipe: the
                    // pump's thread is left behind, and ends with toolwarden.
                    break;
                }
                signal = signals.recv() => match first_signal {
                    // The stop began with the end of input (the SDKs close
                    // stdin, wait, then send SIGTERM): this is the first
                    // signal, passed on as itself.
                    None => {
                        info!(signal, "signal while stopping: passed on to the server");
                        signaller.send(signal);
                        first_signal = Some(signal);
                    }
                    Some(_) => {
                        warn!(signal, "second signal while stopping: SIGKILL to the server");
                        signaller.kill();
                    }
                },
            }
            if outcome.is_some() && server_done {
                break;
            }
        }
        outcome.expect("the loop ends only after the server stopped")
    };
    // A signal that came with the end of input, as the server stopped, is
    // a signal all the same: the exit status says so whichever was first.
    if first_signal.is_none() {
        first_signal = pending_signal(&mut signals).await;
    }
    let status = exit_status.unwrap_or(status);
    info!(status = %status.describe(), "server stopped");

    let why = status.unanswered();
    // A server that stopped by itself before it answered `initialize` did
    // not start: the client and stderr are told what it said last.
    let server_left = match ended {
        Ended::ServerExited | Ended::ServerClosed => true,
        Ended::ClientClosed { cleanly } => !cleanly && stopped == Stopped::ByItself,
        Ended::Signal(_) => false,
    };
    if server_left && !relay.initialize_answered() {
        let client_done = matches!(ended, Ended::ClientClosed { .. });
        if !relay.initialize_sent() && !client_done {
            // The client speaks first, at once: its `initialize` is
            // answered when it comes within a moment.
            let _ = tokio::time::timeout(startup::WAIT_FOR_INITIALIZE, &mut client_pump).await;
        }
        let why = server.did_not_start(&status);
        eprintln!("toolwarden: {why}");
        if let Err(e) = relay.fail_initialize(&why) {
            debug!("could not answer the client's initialize: {e}");
        }
    }
    if let Err(e) = relay.fail_in_flight(&why) {
        debug!("could not answer the requests left: {e}");
    }
    let _ = relay.finish();
    server.finished();

    Ok(match (first_signal, ended) {
        (Some(signal), _) => 128 + signal as u8,
        // The client left and the server needed a signal to follow: that
        // is the stop working, not the server failing.
        (None, Ended::ClientClosed { .. }) if stopped != Stopped::ByItself => 0,
        _ => status.code(),
    })
}

/// A signal already delivered but not yet read, if there is one.
async fn pending_signal(signals: &mut Signals) -> Option<i32> {
    // Lets the runtime's driver read what the signal handler wrote.
    tokio::task::yield_now().await;
    tokio::select! {
        biased;
        signal = signals.recv() => Some(signal),
        () = std::future::ready(()) => None,
    }
}

/// Logs how a pump ended, if it ended badly.
fn report(what: &str, result: Result<io::Result<()>, oneshot::error::RecvError>) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("{what} failed: {e}"),
        // The pump's thread panicked: its message is on stderr already.
        Err(_) => warn!("{what} stopped"),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGINT, SIGTERM and SIGHUP, as one stream.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}
