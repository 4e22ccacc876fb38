//! Just enough of the Redis protocol (RESP) to count sessions: AUTH, SELECT
//! and INCR over one shared TCP connection.
//!
//! A client crate would dwarf the rest of the app for three commands. Every
//! attempt is bounded by a short timeout, and a connection that fails is
//! replaced once, so a Redis that restarted is picked up again while one that
//! is gone is reported quickly instead of hanging requests.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

use crate::services::RedisTarget;

/// How long one attempt (connecting, or one command) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a request may queue for the shared connection.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a Redis command gave no answer.
#[derive(Debug)]
pub struct RedisError(String);

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Redis reached through one lazily opened, shared connection.
pub struct RedisClient {
    target: RedisTarget,
    connection: Mutex<Option<Connection>>,
}

impl RedisClient {
    pub fn new(target: RedisTarget) -> RedisClient {
        RedisClient { target, connection: Mutex::new(None) }
    }

    /// Increments `key` and returns its new value.
    pub async fn incr(&self, key: &str) -> Result<i64, RedisError> {
        match self.command(&["INCR", key]).await? {
            Reply::Integer(n) => Ok(n),
            other => Err(RedisError(format!("INCR answered {other:?}"))),
        }
    }

    /// Sends one command, on the open connection if there is one. If that
    /// connection turns out broken (Redis restarted, say) it reconnects once
    /// and retries; a failure on a fresh connection is final.
    async fn command(&self, args: &[&str]) -> Result<Reply, RedisError> {
        let in_context = |err: RedisError| RedisError(format!("redis at {}: {err}", self.target.address()));
        let mut slot = timeout(QUEUE_TIMEOUT, self.connection.lock())
            .await
            .map_err(|_| in_context(RedisError("timed out waiting for the connection".into())))?;

        if let Some(connection) = slot.as_mut() {
            match attempt(connection.command(args)).await {
                Ok(reply) => return reply.into_result().map_err(in_context),
                Err(_) => *slot = None,
            }
        }

        let mut connection = attempt(Connection::open(&self.target)).await.map_err(in_context)?;
        let reply = attempt(connection.command(args)).await.map_err(in_context)?;
        *slot = Some(connection);
        reply.into_result().map_err(in_context)
    }
}

impl From<io::Error> for RedisError {
    fn from(err: io::Error) -> RedisError {
        RedisError(err.to_string())
    }
}

/// Runs one network step, giving up after ATTEMPT_TIMEOUT.
async fn attempt<T>(step: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    timeout(ATTEMPT_TIMEOUT, step).await.unwrap_or_else(|_| Err(RedisError("timed out".into())))
}

/// A Redis answer of the kinds the commands above can get.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Integer(i64),
    /// Redis refused the command; the connection itself is still good.
    Error(String),
}

impl Reply {
    fn into_result(self) -> Result<Reply, RedisError> {
        match self {
            Reply::Error(message) => Err(RedisError(format!("refused: {message}"))),
            reply => Ok(reply),
        }
    }
}

struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    /// Connects, then authenticates and selects the database if the binding
    /// asks for it.
    async fn open(target: &RedisTarget) -> Result<Connection, RedisError> {
        let stream = TcpStream::connect(target.address()).await?;
        stream.set_nodelay(true)?;
        let mut connection = Connection { stream: BufReader::new(stream) };

        let database = target.database.map(|db| db.to_string());
        let auth: Option<Vec<&str>> = match (&target.username, &target.password) {
            (Some(user), Some(password)) => Some(vec!["AUTH", user, password]),
            (None, Some(password)) => Some(vec!["AUTH", password]),
            _ => None,
        };
        let select = database.as_deref().map(|db| vec!["SELECT", db]);
        for setup in [auth, select].into_iter().flatten() {
            connection.command(&setup).await?.into_result()?;
        }
        Ok(connection)
    }

    /// Sends a command and reads its reply. A refusal by Redis is an `Ok`
    /// reply; an error means the connection can no longer be trusted.
    async fn command(&mut self, args: &[&str]) -> Result<Reply, RedisError> {
        self.stream.get_mut().write_all(&encode(args)).await?;
        let mut line = Vec::new();
        if self.stream.read_until(b'\n', &mut line).await? == 0 {
            return Err(RedisError("the connection was closed".into()));
        }
        Ok(parse_reply(&line)?)
    }
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses a one-line reply. Any other kind (bulk strings, arrays) would leave
/// unread bytes on the connection, so it is an error that drops the connection.
fn parse_reply(line: &[u8]) -> io::Result<Reply> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let line = std::str::from_utf8(line).map_err(|_| invalid("reply is not UTF-8"))?;
    let line = line.strip_suffix("\r\n").ok_or_else(|| invalid("reply does not end in CRLF"))?;
    let (kind, body) = line.split_at_checked(1).ok_or_else(|| invalid("empty reply"))?;
    match kind {
        "+" => Ok(Reply::Simple(body.to_string())),
        "-" => Ok(Reply::Error(body.to_string())),
        ":" => body.parse().map(Reply::Integer).map_err(|_| invalid("integer reply is not a number")),
        _ => Err(invalid(&format!("unexpected reply {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_bulk_string_arrays() {
        assert_eq!(encode(&["INCR", "session:ä"]), b"*2\r\n$4\r\nINCR\r\n$10\r\nsession:\xc3\xa4\r\n");
    }

    #[test]
    fn parses_one_line_replies() {
        assert_eq!(parse_reply(b":42\r\n").unwrap(), Reply::Integer(42));
        assert_eq!(parse_reply(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(parse_reply(b"-WRONGPASS invalid\r\n").unwrap(), Reply::Error("WRONGPASS invalid".into()));
    }

    #[test]
    fn refuses_replies_it_cannot_consume_whole() {
        for line in [&b"$3\r\n"[..], b"*1\r\n", b":x\r\n", b"+OK", b"\r\n"] {
            assert!(parse_reply(line).is_err(), "{line:?}");
        }
    }
}
