//! The server toolwarden stands in front of, as the session sees it: a
//! pair of byte streams, newline-delimited JSON-RPC each way, and an end.
//! The relay knows nothing else of it. Today's one kind is a child process
//! (child.rs: its process group, its stderr, its stop in order, and the
//! watchdog that outlives toolwarden).

pub mod child;

use std::ffi::OsString;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tracing::warn;

use crate::blocking::Fd;
pub use child::{ServerStderr, SpawnError, Stopped};

/// A started server.
pub struct Upstream {
    server: child::Server,
    watchdog: Option<child::Watchdog>,
}

/// The server's two streams, as the pumps read and write them.
pub struct Pipes {
    /// What toolwarden writes reaches the server.
    pub to_server: Fd,
    /// What the server writes, for toolwarden to read.
    pub from_server: Fd,
}

/// How the server ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit(ExitStatus);

impl Exit {
    /// Words for a log line or an error message: "exit code 3".
    pub fn describe(&self) -> String {
        child::describe(self.0)
    }

    /// The exit code toolwarden passes on (a shell's convention).
    pub fn code(&self) -> u8 {
        child::exit_code(self.0)
    }
}

/// Signals the server: its whole process group.
#[derive(Debug, Clone, Copy)]
pub struct Signaller(i32);

impl Signaller {
    /// Passes a signal toolwarden got on to the server.
    pub fn send(self, signal: i32) {
        child::signal_group(self.0, signal);
    }

    /// Ends the server at once, and whatever it started.
    pub fn kill(self) {
        self.send(libc::SIGKILL);
    }
}

impl Upstream {
    /// Starts the server `command` names.
    pub fn start(
        command: &[OsString],
        stderr: ServerStderr,
    ) -> Result<(Upstream, Pipes), SpawnError> {
        let (server, stdin, stdout) = child::Server::spawn_with(command, stderr)?;
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
        Ok((Upstream { server, watchdog }, pipes))
    }

    /// Waits for the server to end by itself.
    pub async fn wait(&mut self) -> io::Result<Exit> {
        self.server.wait().await.map(Exit)
    }

    /// Stops the server once its input is closed: waits `close_wait` for
    /// it to leave, then SIGTERM, `term_wait`, SIGKILL.
    pub async fn stop(
        &mut self,
        close_wait: Duration,
        term_wait: Duration,
    ) -> io::Result<(Exit, Stopped)> {
        let (status, stopped) = self.server.stop(close_wait, term_wait).await?;
        Ok((Exit(status), stopped))
    }

    /// What signals the server, usable while it is being stopped.
    pub fn signaller(&self) -> Signaller {
        Signaller(self.server.group())
    }

    /// The server's last words (its stderr's last lines), to say why it
    /// did not start.
    pub fn last_words(&self) -> Vec<String> {
        self.server.stderr_tail()
    }

    /// The server is stopped: nothing is left to watch over.
    pub fn finished(self) {
        if let Some(watchdog) = self.watchdog {
            watchdog.disarm();
        }
    }
}
