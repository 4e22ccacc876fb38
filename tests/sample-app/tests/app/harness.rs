//! Test harness: runs the built sample-app (and, for the session tests, a
//! redis-server) on free loopback ports, and talks plain HTTP/1.1 to it.
//!
//! The client is a few dozen lines over std's TcpStream rather than an HTTP
//! crate, so the tests control exactly which connection each request uses
//! and when it is opened, which the keep-alive and shutdown tests rely on.
//! Every wait here is bounded, so a broken app fails a test instead of
//! hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in the harness may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

/// A port nothing is listening on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Polls `condition` every few milliseconds until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// A running sample-app, killed when dropped.
pub struct SampleApp {
    child: Child,
    pub port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    /// The threads copying the app's stdout and stderr; they end when the
    /// app exits and its pipes close.
    readers: Vec<thread::JoinHandle<()>>,
}

impl SampleApp {
    /// Starts the app with exactly `env` (plus PORT, unless given) and waits
    /// until it says it is listening.
    pub fn start(env: &[(&str, &str)]) -> SampleApp {
        let app = SampleApp::spawn(env);
        app.wait_until_listening(PATIENCE);
        app
    }

    /// Starts the app without waiting for it.
    pub fn spawn(env: &[(&str, &str)]) -> SampleApp {
        let port = match env.iter().find(|(name, _)| *name == "PORT") {
            Some((_, port)) => port.parse().unwrap_or(0),
            None => free_port(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_sample-app"));
        command
            .env_clear()
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("sample-app starts");

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stdout);
        let pipe = child.stdout.take().expect("stdout is piped");
        let stdout_reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let text = Arc::clone(&stderr);
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let stderr_reader = thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                text.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });

        SampleApp { child, port, stdout, stderr, readers: vec![stdout_reader, stderr_reader] }
    }

    /// Waits for the startup line; panics with the app's stderr if it never
    /// comes or the app exits first.
    pub fn wait_until_listening(&self, limit: Duration) {
        let listening = wait_for(limit, || self.stdout_lines().iter().any(|line| line.contains(" listening on ")));
        assert!(listening, "sample-app did not start listening within {limit:?}; stderr:\n{}", self.stderr());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends the named signal (`TERM`, `INT`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the app to exit by itself, and for everything it wrote to
    /// be collected, so its output can be checked right after.
    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        wait_for(limit, || {
            status = self.child.try_wait().expect("try_wait works");
            status.is_some()
        });
        let status = status.unwrap_or_else(|| panic!("sample-app still running after {limit:?}"));
        let drained = wait_for(limit, || self.readers.iter().all(|reader| reader.is_finished()));
        assert!(drained, "sample-app's output pipes still open after it exited");
        status
    }

    /// A GET on a new connection that is closed afterwards.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[])
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut connection = self.connect();
        let mut headers = headers.to_vec();
        headers.push(("Connection", "close"));
        connection.send(method, path, &headers).unwrap_or_else(|err| panic!("{method} {path} failed: {err}"))
    }

    /// A keep-alive connection to the app.
    pub fn connect(&self) -> Connection {
        Connection::open(self.address()).expect("sample-app accepts connections")
    }
}

impl Drop for SampleApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 response, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("body is not JSON ({err}): {:?}", self.body))
    }
}

/// An HTTP/1.1 connection that can carry several requests in turn.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(address: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&address, PATIENCE)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_write_timeout(Some(PATIENCE))?;
        stream.set_nodelay(true)?;
        Ok(Connection { reader: BufReader::new(stream) })
    }

    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
        self.write_request(method, path, headers)?;
        self.read_response()
    }

    /// Sends a request without waiting for its answer.
    pub fn write_request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> io::Result<()> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.reader.get_mut().write_all(request.as_bytes())
    }

    /// Reads one response, whose body the app always sizes with Content-Length.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response"));
        }
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;

        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| io::Error::other("response without Content-Length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
    }

    /// Whether the server has closed this connection (reads end of stream).
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// Whether a new connection to `address` is refused right now.
pub fn refuses_connections(address: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&address, Duration::from_secs(1)),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// A throwaway redis-server on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: Child,
}

impl RedisServer {
    /// Whether redis-server can be run here; the reason when not.
    pub fn unavailable() -> Option<String> {
        match Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(status) if status.success() => None,
            Ok(status) => Some(format!("`redis-server --version` exited with {status}")),
            Err(err) => Some(format!("redis-server is not on PATH ({err})")),
        }
    }

    /// Starts a Redis without persistence that requires `password`, on
    /// `port`, and waits until it accepts connections.
    pub fn start(port: u16, password: &str) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", password])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer { child };
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert!(wait_for(PATIENCE, || TcpStream::connect(address).is_ok()), "redis-server did not listen on {address}");
        server
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints past the test harness's output capture, so that a skipped case is
/// visible in a normal `cargo test` run.
pub fn note(message: &str) {
    let _ = writeln!(io::stderr(), "{message}");
}
