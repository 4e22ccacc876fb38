//! A tiny loopback HTTP/1.1 server for the verify tests: one response per connection, a handler deciding
//! status and body, an optional delay, and a count of requests served. Beside it, a TLS front for it (the test
//! certificate in `testdata/`) and a server answering fixed bytes to anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct TestRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) host: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

/// What the handler answers: a status and body, plus headers when the test needs them.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl From<(u16, String)> for Reply {
    fn from((status, body): (u16, String)) -> Reply {
        Reply { status, headers: Vec::new(), body }
    }
}

type Handler = dyn Fn(&TestRequest) -> Reply + Send + Sync;

/// A loopback listener handing each connection to a task of its own; it stops accepting when dropped.
struct Listening {
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    async fn start<F, Fut>(serve: F) -> Listening
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        Listening { address, task }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct TestServer {
    listening: Listening,
    served: Arc<AtomicUsize>,
}

impl TestServer {
    pub(crate) async fn start<R: Into<Reply>>(
        handler: impl Fn(&TestRequest) -> R + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::start_with_delay(Duration::ZERO, handler).await
    }

    pub(crate) async fn start_with_delay<R: Into<Reply>>(
        delay: Duration,
        handler: impl Fn(&TestRequest) -> R + Send + Sync + 'static,
    ) -> TestServer {
        let handler: Arc<Handler> = Arc::new(move |request: &TestRequest| handler(request).into());
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let listening = Listening::start(move |stream| {
            let (handler, counter) = (handler.clone(), counter.clone());
            async move {
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
            }
        })
        .await;
        TestServer { listening, served }
    }

    /// `127.0.0.1:port`.
    pub(crate) fn address(&self) -> String {
        self.listening.address.clone()
    }

    pub(crate) fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Terminates TLS for `*.example.com` (signed by `testdata/route-ca.pem`) and relays each request's head to a
/// backend [`TestServer`], then its answer back. A handshake that fails sends the client rustls's alert.
pub(crate) struct TlsFront(Listening);

impl TlsFront {
    pub(crate) async fn start(backend: &str) -> TlsFront {
        let certs = CertificateDer::pem_slice_iter(include_bytes!("testdata/route-cert.pem"))
            .chain(CertificateDer::pem_slice_iter(include_bytes!("testdata/route-ca.pem")))
            .collect::<Result<Vec<_>, _>>()
            .expect("test certificates are PEM");
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/route-key.pem")).expect("test key is PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("test certificate and key match");
        let config = Arc::new(config);
        let backend = backend.to_owned();
        let listening = Listening::start(move |stream| {
            let (config, backend) = (config.clone(), backend.clone());
            async move {
                let stream = stream.into_std().expect("a tokio stream converts");
                let _ = tokio::task::spawn_blocking(move || relay_tls(stream, config, &backend)).await;
            }
        })
        .await;
        TlsFront(listening)
    }

    /// `127.0.0.1:port`.
    pub(crate) fn address(&self) -> String {
        self.0.address.clone()
    }

    pub(crate) fn port(&self) -> u16 {
        self.0.address.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).expect("host:port")
    }
}

fn relay_tls(stream: std::net::TcpStream, config: Arc<rustls::ServerConfig>, backend: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    stream.set_nonblocking(false)?;
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut head = Vec::new();
    let mut buffer = [0; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tls.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let mut upstream = std::net::TcpStream::connect(backend)?;
    upstream.write_all(&head)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    tls.write_all(&answer)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// Answers every connection with the same bytes, whatever arrives (a server of another protocol).
pub(crate) struct RawServer(Listening);

impl RawServer {
    pub(crate) async fn start(answer: &'static [u8]) -> RawServer {
        RawServer(
            Listening::start(move |mut stream| async move {
                let mut buffer = [0; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(answer).await;
            })
            .await,
        )
    }

    /// `127.0.0.1:port`.
    pub(crate) fn address(&self) -> String {
        self.0.address.clone()
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
