//! Helpers shared by the integration tests: running the resource's real binaries the way Concourse does, and
//! (in [`sim`]) a local Cloud Foundry to run them against.

pub mod archive;
pub mod deploy;
pub mod secrets;
pub mod server;
pub mod sim;
pub mod summary;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Runs a resource binary with `stdin` as its request (see [`resource_command`]) and waits for it. Its output is
/// scanned for secrets (see [`secrets`]): a leak fails the test.
pub fn run_resource(name: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut running = spawn_resource(name, args, stdin, env, None);
    let _ = running.child.wait();
    running.collect()
}

/// A resource binary running in the background: its output is collected as it comes, so a test can watch
/// the log, wait for the run with a time limit, or SIGKILL it mid-way. When it ends, its output is scanned for
/// secrets like [`run_resource`]'s.
pub struct Background {
    name: String,
    stdin: String,
    env: Vec<(String, String)>,
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    /// Every stderr line so far, as it arrives.
    lines: Arc<Mutex<Vec<String>>>,
    stderr_reader: std::thread::JoinHandle<()>,
}

/// Called with each stderr line of a [`Background`] run as it arrives, and the binary's pid: from the thread
/// reading its stderr, so the binary has gone at most a few instructions further (e.g. to SIGKILL it there).
pub type LineHook = Box<dyn FnMut(&str, u32) + Send>;

/// Starts a resource binary with `stdin` as its request and returns at once; `on_line` sees its stderr lines.
pub fn spawn_resource(
    name: &str,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
    mut on_line: Option<LineHook>,
) -> Background {
    let mut child = resource_command(name, args, env).spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    // The binary may exit before reading stdin (e.g. a bad argument); a broken pipe here is expected then.
    let _ = child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes());
    let mut out = child.stdout.take().expect("piped stdout");
    let stdout = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let lines = Arc::new(Mutex::new(Vec::new()));
    let err = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (collected, pid) = (lines.clone(), child.id());
    let stderr_reader = std::thread::spawn(move || {
        for line in err.split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(hook) = on_line.as_mut() {
                hook(&line, pid);
            }
            collected.lock().unwrap().push(line);
        }
    });
    Background {
        name: name.to_owned(),
        stdin: stdin.to_owned(),
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        child,
        stdout,
        lines,
        stderr_reader,
    }
}

impl Background {
    /// The log written so far.
    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().iter().map(|line| format!("{line}\n")).collect()
    }

    /// Sends it SIGTERM, as Concourse does to a step of a build that is aborted.
    pub fn terminate(&self) {
        // bash's own kill: the image has bash but no procps.
        let kill = format!("kill -TERM {}", self.child.id());
        let status = Command::new("bash").args(["-c", &kill]).status().expect("bash");
        assert!(status.success(), "kill -TERM {}", self.child.id());
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
            std::thread::sleep(Duration::from_millis(20));
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
        let stderr: String = self.lines.lock().unwrap().iter().map(|line| format!("{line}\n")).collect();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        secrets::scan(&self.name, &self.stdin, &env, &stdout, &stderr);
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
