//! The accept loop every listener uses: HTTP/1.1 with keep-alive, optional TLS, and the ability to drop a
//! connection without answering (a response carrying [`DropConnection`] closes the TCP connection instead of being
//! sent), which the fault injector needs and axum's own `serve` cannot do.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Put into a response's extensions to close the connection instead of sending that response.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// The client's address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

pub type BoxedResponse = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Handles one request of a connection.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxedResponse + Send + Sync>;

/// Wraps an axum router as a [`Handler`].
pub fn axum_handler(router: axum::Router) -> Handler {
    Arc::new(move |request: Request<Incoming>| {
        let router = router.clone();
        Box::pin(async move {
            use tower::ServiceExt;
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    })
}

/// Serves `listener` until `shutdown` turns true; the returned task ends when the listener is closed.
pub fn spawn(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped(&mut stop) => break,
            };
            let Ok((stream, peer)) = accepted else { continue };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve_connection(stream, peer, handler, shutdown).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_connection(stream, peer, handler, shutdown).await;
                        }
                    }
                }
            });
        }
    })
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, handler: Handler, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kill = Arc::new(tokio::sync::Notify::new());
    let service_kill = kill.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let handler = handler.clone();
        let kill = service_kill.clone();
        request.extensions_mut().insert(PeerAddr(peer));
        async move {
            let response = handler(request).await;
            if response.extensions().get::<DropConnection>().is_some() {
                // Close the connection with no response: the client sees it reset or closed mid-request.
                kill.notify_one();
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = kill.notified() => {}
        _ = stopped(&mut shutdown) => {}
    }
}

/// Resolves when the sim shuts down.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
