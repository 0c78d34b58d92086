//! The server as a child process: started in a process group of its own
//! (launchers such as `npx` and `uvx` start the real server as a
//! grandchild), stopped in order, and turned into an exit code.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{info, warn};

pub struct Server {
    child: Child,
    /// The process group: the server's pid, since it leads its own group.
    group: i32,
}

/// Why a command did not start, with the exit code a shell would use.
#[derive(Debug)]
pub struct SpawnError {
    pub message: String,
    pub exit_code: u8,
}

/// How the server came to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself once its stdin was closed.
    ByItself,
    /// It needed SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

impl Server {
    /// Starts `command` with piped stdin and stdout; its stderr is
    /// toolwarden's.
    pub fn spawn(command: &[OsString]) -> Result<(Server, ChildStdin, ChildStdout), SpawnError> {
        let (program, args) = command.split_first().ok_or_else(|| SpawnError {
            message: "no server command given after --".into(),
            exit_code: 2,
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                // If toolwarden dies, even by SIGKILL, the server gets
                // SIGKILL too instead of running on unsupervised.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // toolwarden may have died before the line above.
                if libc::getppid() != parent {
                    return Err(io::Error::other(
                        "toolwarden exited while starting the server",
                    ));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            let name = program.to_string_lossy();
            let (why, exit_code) = match e.kind() {
                io::ErrorKind::NotFound => ("not found".to_owned(), 127),
                io::ErrorKind::PermissionDenied => ("permission denied".to_owned(), 126),
                _ => (e.to_string(), 127),
            };
            SpawnError {
                message: format!("cannot start the server `{name}`: {why}"),
                exit_code,
            }
        })?;
        let group = child.id().map(|id| id as i32).unwrap_or(0);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        info!(pid = group, "server started");
        Ok((Server { child, group }, stdin, stdout))
    }

    pub fn group(&self) -> i32 {
        self.group
    }

    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Waits for the server to exit after its stdin was closed; then
    /// SIGTERM to its group, and SIGKILL if that is not enough.
    pub async fn stop(
        &mut self,
        close_wait: Duration,
        term_wait: Duration,
    ) -> io::Result<(ExitStatus, Stopped)> {
        if let Ok(status) = tokio::time::timeout(close_wait, self.child.wait()).await {
            return Ok((status?, Stopped::ByItself));
        }
        info!("server still running {close_wait:?} after its stdin closed: SIGTERM");
        signal_group(self.group, libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(term_wait, self.child.wait()).await {
            return Ok((status?, Stopped::Terminated));
        }
        warn!("server still running {term_wait:?} after SIGTERM: SIGKILL");
        signal_group(self.group, libc::SIGKILL);
        Ok((self.child.wait().await?, Stopped::Killed))
    }
}

/// Sends `signal` to every process of the server's group. Only called while
/// the group has members (the server is not yet reaped, or something still
/// holds its pipe), so the group id cannot have been reused.
pub fn signal_group(group: i32, signal: i32) {
    if group > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // touches no memory.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}

/// A shell's convention: the exit code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}

/// Words for a log line or an error message: "exit code 3", "signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".into(),
    }
}
