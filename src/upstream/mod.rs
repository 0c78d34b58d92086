//! The server toolwarden stands in front of, as the session sees it: a
//! pair of byte streams, newline-delimited JSON-RPC each way, and an end.
//! The relay knows nothing else of it. It is a child process (child.rs:
//! its process group, its stderr, its stop in order, and the watchdog
//! that outlives toolwarden) or, when the command is one `http://` or
//! `https://` URL, a remote server (remote/: Streamable HTTP or HTTP+SSE).

pub mod child;
pub mod remote;

use std::ffi::OsString;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tracing::warn;

use crate::session::blocking::Fd;
pub use child::{ServerStderr, SpawnError, Stopped};

/// A started server.
pub struct Upstream {
    kind: Kind,
}

enum Kind {
    Child {
        server: child::Server,
        watchdog: Option<child::Watchdog>,
    },
    Remote(remote::Remote),
}

/// What a server is started with.
pub struct Options<'a> {
    /// What becomes of a child's stderr.
    pub stderr: ServerStderr,
    /// `--header` and `--transport`, for a remote server.
    pub remote: &'a crate::cli::RemoteArgs,
    /// `--max-message-bytes`.
    pub max_message: usize,
}

/// The server's two streams, as the pumps read and write them.
pub struct Pipes {
    /// What toolwarden writes reaches the server.
    pub to_server: Fd,
    /// What the server writes, for toolwarden to read.
    pub from_server: Fd,
}

/// How the server ended.
#[derive(Debug, Clone)]
pub enum Exit {
    /// The child's exit status.
    Process(ExitStatus),
    /// The remote session's end.
    Remote(remote::End),
}

impl Exit {
    /// Words for a log line or an error message: "exit code 3".
    pub fn describe(&self) -> String {
        match self {
            Exit::Process(status) => child::describe(*status),
            Exit::Remote(end) => end.words.clone(),
        }
    }

    /// The exit code toolwarden passes on (a shell's convention).
    pub fn code(&self) -> u8 {
        match self {
            Exit::Process(status) => child::exit_code(*status),
            Exit::Remote(end) => end.code,
        }
    }

    /// Why requests left in flight got no answer, for their error.
    pub fn unanswered(&self) -> String {
        match self {
            Exit::Process(_) => {
                format!("the server exited ({}) before answering", self.describe())
            }
            Exit::Remote(end) => format!("no answer from the remote server: {}", end.words),
        }
    }
}

/// Signals the server: a child's whole process group; a remote session's
/// stop is hurried.
#[derive(Clone)]
pub enum Signaller {
    Group(i32),
    Remote(remote::Handle),
}

impl Signaller {
    /// Passes a signal toolwarden got on to the server.
    pub fn send(&self, signal: i32) {
        match self {
            Signaller::Group(group) => child::signal_group(*group, signal),
            Signaller::Remote(remote) => remote.hurry(),
        }
    }

    /// Ends the server at once, and whatever it started.
    pub fn kill(&self) {
        self.send(libc::SIGKILL);
    }
}

/// Whether a server command is a remote server's URL.
pub fn is_remote(command: &[OsString]) -> Option<&str> {
    match command {
        [one] => one
            .to_str()
            .filter(|c| c.starts_with("http://") || c.starts_with("https://")),
        _ => None,
    }
}

impl Upstream {
    /// Starts the server `command` names: a URL is a remote server.
    pub fn start(command: &[OsString], options: &Options) -> Result<(Upstream, Pipes), SpawnError> {
        if let Some(url) = is_remote(command) {
            let (remote, pipes) = remote::Remote::start(
                url,
                &remote::Options {
                    headers: &options.remote.headers,
                    transport: options.remote.transport,
                    oauth_client_id: options.remote.oauth_client_id.as_deref(),
                    max_message: options.max_message,
                },
            )?;
            return Ok((
                Upstream {
                    kind: Kind::Remote(remote),
                },
                pipes,
            ));
        }
        if !options.remote.headers.is_empty() {
            return Err(SpawnError {
                message: "--header is for a remote server (a command that is one http:// or https:// URL)".into(),
                exit_code: 2,
            });
        }
        let (server, stdin, stdout) = child::Server::spawn_with(command, options.stderr)?;
        let group = server.group();
        let pipes = (|| -> io::Result<Pipes> {
            Ok(Pipes {
                to_server: Fd::own_pipe(stdin.into_owned_fd()?)?,
                from_server: Fd::own_pipe(stdout.into_owned_fd()?)?,
            })
        })();
        let pipes = match pipes {
            Ok(pipes) => pipes,
            Err(e) => {
                child::signal_group(group, libc::SIGKILL);
                return Err(SpawnError {
                    message: format!("cannot set up the server's pipes: {e}"),
                    exit_code: 1,
                });
            }
        };
        let watchdog = match child::Watchdog::start(group) {
            Ok(watchdog) => Some(watchdog),
            Err(e) => {
                warn!("no watchdog for the server's process group: {e}");
                None
            }
        };
        Ok((
            Upstream {
                kind: Kind::Child { server, watchdog },
            },
            pipes,
        ))
    }

    /// Waits for the server to end by itself.
    pub async fn wait(&mut self) -> io::Result<Exit> {
        match &mut self.kind {
            Kind::Child { server, .. } => server.wait().await.map(Exit::Process),
            Kind::Remote(remote) => remote.wait().await.map(Exit::Remote),
        }
    }

    /// Stops the server once its input is closed: waits `close_wait` for
    /// it to leave, then SIGTERM, `term_wait`, SIGKILL. A remote session
    /// waits `close_wait` for the answers on their way, then is ended
    /// (DELETE) within `term_wait`.
    pub async fn stop(
        &mut self,
        close_wait: Duration,
        term_wait: Duration,
    ) -> io::Result<(Exit, Stopped)> {
        match &mut self.kind {
            Kind::Child { server, .. } => {
                let (status, stopped) = server.stop(close_wait, term_wait).await?;
                Ok((Exit::Process(status), stopped))
            }
            Kind::Remote(remote) => {
                let (end, stopped) = remote.stop(close_wait, term_wait).await?;
                Ok((Exit::Remote(end), stopped))
            }
        }
    }

    /// What signals the server, usable while it is being stopped.
    pub fn signaller(&self) -> Signaller {
        match &self.kind {
            Kind::Child { server, .. } => Signaller::Group(server.group()),
            Kind::Remote(remote) => Signaller::Remote(remote.handle()),
        }
    }

    /// The server's last words (a child's stderr's last lines; a remote
    /// session's last HTTP errors), to say why it did not start.
    pub fn last_words(&self) -> Vec<String> {
        match &self.kind {
            Kind::Child { server, .. } => server.stderr_tail(),
            Kind::Remote(remote) => remote.last_words(),
        }
    }

    /// Why the server did not answer `initialize`, after it ended with
    /// `exit`: the words for stderr and the client.
    pub fn did_not_start(&self, exit: &Exit) -> String {
        match &self.kind {
            Kind::Child { .. } => {
                crate::session::startup::did_not_start(&exit.unanswered(), &self.last_words())
            }
            Kind::Remote(_) => {
                let mut text = format!(
                    "the remote server did not answer initialize: {}",
                    exit.describe()
                );
                let earlier: Vec<String> = self
                    .last_words()
                    .into_iter()
                    .filter(|w| *w != exit.describe())
                    .collect();
                if !earlier.is_empty() {
                    text.push_str("; before that:");
                    for words in earlier {
                        text.push_str("\n  ");
                        text.push_str(&words);
                    }
                }
                text
            }
        }
    }

    /// The server is stopped: nothing is left to watch over.
    pub fn finished(self) {
        if let Kind::Child {
            watchdog: Some(watchdog),
            ..
        } = self.kind
        {
            watchdog.disarm();
        }
    }
}
