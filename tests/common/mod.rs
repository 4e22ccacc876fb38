//! Helpers shared by the integration tests: running the resource's real binaries the way Concourse does, and
//! (in [`sim`]) a local Cloud Foundry to run them against.

#![allow(dead_code)]

pub mod deploy;
pub mod sim;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary `name` (check, in or out): from `RESOURCE_BIN_DIR` when set (e.g. `/opt/resource` inside the
/// image), else the one cargo built for this test run.
pub fn resource_bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("RESOURCE_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    PathBuf::from(match name {
        "check" => env!("CARGO_BIN_EXE_check"),
        "in" => env!("CARGO_BIN_EXE_in"),
        "out" => env!("CARGO_BIN_EXE_out"),
        other => panic!("no resource binary called {other}"),
    })
}

/// What one run of a resource binary produced.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The last non-empty line of stderr: the error line on failure.
    pub fn last_line(&self) -> &str {
        self.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
    }

    /// Asserts the protocol's failure contract: exit 1, nothing on stdout, a last line naming the problem.
    pub fn assert_clean_failure(&self, expected_in_last_line: &str) {
        assert_eq!(self.status, 1, "exit status; stderr:\n{}", self.stderr);
        assert_eq!(self.stdout, "", "stdout must stay empty on failure");
        let last = self.last_line();
        assert!(last.starts_with("error: "), "last stderr line should be the error: {last:?}");
        assert!(
            last.contains(expected_in_last_line),
            "last stderr line {last:?} should contain {expected_in_last_line:?}"
        );
    }
}

/// The command that runs a resource binary the way Concourse does: `args` as argv[1..], a minimal environment
/// plus `env`, piped stdio, and a working directory that is not the put/get directory (Concourse leaves it
/// undefined).
pub fn resource_command(name: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(resource_bin(name));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs a resource binary with `stdin` as its request (see [`resource_command`]) and waits for it.
pub fn run_resource(name: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut child = resource_command(name, args, env).spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    // The binary may exit before reading stdin (e.g. a bad argument); a broken pipe here is expected then.
    let _ = child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes());
    let Output { status, stdout, stderr } = child.wait_with_output().expect("wait for resource binary");
    Run {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A resource binary running in the background: its output is collected as it comes, so a test can watch
/// the log, wait for the run with a time limit, or SIGKILL it mid-way.
pub struct Background {
    name: String,
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: std::thread::JoinHandle<()>,
}

/// Starts a resource binary with `stdin` as its request and returns at once.
pub fn spawn_resource(name: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Background {
    let mut child = resource_command(name, args, env).spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let _ = child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes());
    let mut out = child.stdout.take().expect("piped stdout");
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let err = child.stderr.take().expect("piped stderr");
    let collected = stderr.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let mut text = collected.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    Background { name: name.to_owned(), child, stdout, stderr, stderr_reader }
}

impl Background {
    /// The log written so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Waits for it to exit by itself, at most `limit` (then it is killed and the test fails).
    pub fn wait(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let name = self.name.clone();
                let run = self.collect();
                panic!("{name} did not finish within {limit:?}; its log:\n{}", run.stderr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.collect()
    }

    /// SIGKILLs it, as a crashed worker or a cancelled build would leave it: no clean-up of any kind.
    pub fn kill(mut self) -> Run {
        let _ = self.child.kill();
        self.collect()
    }

    fn collect(mut self) -> Run {
        let status = self.child.wait().expect("wait for resource binary");
        let stdout = self.stdout.join().expect("stdout reader");
        self.stderr_reader.join().expect("stderr reader");
        let stderr = self.stderr.lock().unwrap().clone();
        Run { status: status.code().unwrap_or(-1), stdout, stderr }
    }
}

/// An HTTP client builder for tests (rustls with *ring*, as the resource uses, no proxy).
pub fn http_client() -> reqwest::ClientBuilder {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Another test may have installed it first; either way one provider is in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().no_proxy()
}
