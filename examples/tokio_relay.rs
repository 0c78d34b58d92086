//! A second baseline for benchmarks: the byte relay's job (start a server,
//! copy bytes both ways, parse nothing) done the way toolwarden does its
//! IO, on a single-threaded tokio event loop over non-blocking pipes. Set
//! against `byte_relay` (a blocking thread per direction), it shows what
//! the event loop itself costs, apart from anything toolwarden decides.
//!
//! ```text
//! BENCH_RELAY=target/release/examples/tokio_relay cargo bench --bench e2e
//! ```

use std::os::fd::AsFd;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;

fn main() {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: tokio_relay -- CMD [ARGS...]");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let status = runtime.block_on(async {
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                eprintln!("tokio_relay: cannot start {program}: {e}");
                std::process::exit(127)
            });
        let to_server = child.stdin.take().expect("piped");
        let from_server = child.stdout.take().expect("piped");
        let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().unwrap());
        let stdout = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().unwrap());
        let client_in = pipe::Receiver::from_file(stdin).expect("stdin is a pipe");
        let client_out = pipe::Sender::from_file(stdout).expect("stdout is a pipe");
        let upstream = tokio::spawn(copy(client_in, to_server));
        copy(from_server, client_out).await;
        upstream.abort();
        child
            .wait()
            .await
            .map(|s| s.code().unwrap_or(1))
            .unwrap_or(1)
    });
    std::process::exit(status);
}

/// Copies until end of input, writing each read out at once.
async fn copy(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
