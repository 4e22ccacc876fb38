//! A tiny loopback HTTP/1.1 server for the verify tests: one response per connection, a handler deciding
//! status and body, an optional delay, and a count of requests served.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub struct TestRequest {
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What the handler answers: a status and body, plus headers when the test needs them.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl From<(u16, String)> for Reply {
    fn from((status, body): (u16, String)) -> Reply {
        Reply { status, headers: Vec::new(), body }
    }
}

type Handler = dyn Fn(&TestRequest) -> Reply + Send + Sync;

pub struct TestServer {
    address: String,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start<R: Into<Reply>>(handler: impl Fn(&TestRequest) -> R + Send + Sync + 'static) -> TestServer {
        TestServer::start_with_delay(Duration::ZERO, handler).await
    }

    pub async fn start_with_delay<R: Into<Reply>>(
        delay: Duration,
        handler: impl Fn(&TestRequest) -> R + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().unwrap().to_string();
        let handler: Arc<Handler> = Arc::new(move |request: &TestRequest| handler(request).into());
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let Some(request) = read_request(BufReader::new(read)).await else { return };
                    tokio::time::sleep(delay).await;
                    let Reply { status, headers, body } = handler(&request);
                    counter.fetch_add(1, Ordering::SeqCst);
                    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
                        body.len()
                    );
                    let _ = write.write_all(head.as_bytes()).await;
                    let _ = write.write_all(body.as_bytes()).await;
                });
            }
        });
        TestServer { address, served, task }
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<TestRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let host = headers.iter().find(|(n, _)| n == "host").map(|(_, v)| v.clone()).unwrap_or_default();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(TestRequest { method, path, host, headers, body: String::from_utf8_lossy(&body).into_owned() })
}
