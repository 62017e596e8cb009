//! A real `ferry-signal` process on 127.0.0.1 for the integration tests and the load bench:
//! started on a free port, its address read from what it prints, killed on drop.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The running server.
pub struct Server {
    /// The process (its pid is what the load bench reads RSS from).
    pub child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// What it printed on stdout after its address (tracing writes its log there).
    #[allow(dead_code)] // Not every test file reads the logs.
    pub stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `--host 127.0.0.1 --port 0` plus `args`; `logs` passes its stderr
/// through (the bench wants it, tests keep quiet).
pub fn spawn<I, S>(args: I, logs: bool) -> Server
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let stderr = if logs {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    spawn_with(args, "warn", stderr)
}

/// [`spawn`] with the log filter `rust_log` and stderr going to `stderr`.
#[allow(dead_code)] // Not every test file reads the logs.
pub fn spawn_with<I, S>(args: I, rust_log: &str, stderr: Stdio) -> Server
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-signal"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start ferry-signal");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("ferry-signal printed its address")
            .expect("read stdout");
        if let Some(rest) = line.strip_prefix("Ferry signaling: ws://") {
            break rest.split('/').next().expect("address").to_owned();
        }
    };
    // Keep draining stdout: the log goes there, and a closed pipe would fail its writes.
    let stdout = std::sync::Arc::<std::sync::Mutex<String>>::default();
    let sink = stdout.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
    Server {
        child,
        addr,
        stdout,
    }
}
