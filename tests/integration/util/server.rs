//! Hand-written HTTP servers on 127.0.0.1 for what cf-sim is not: a scripted Cloud Controller answering exactly
//! as a test says, and a forward proxy counting the connections through it. Both see requests as sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads from `conn` into `buf` until it holds a whole HTTP request head; returns where the head ends, or `None`
/// when the connection closes first.
async fn read_head(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        if !read_more(conn, buf).await {
            return None;
        }
    }
}

/// Appends what `conn` has next to `buf`; false when the connection is closed.
async fn read_more(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match conn.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// What a scripted API answers to one request: status line, extra header lines, body.
pub type Scripted = (&'static str, String, String);

/// A scripted Cloud Controller on 127.0.0.1: `GET /` answers a root document whose login link is `uaa` (the
/// scripted server itself when `None`) and whose `cloud_controller_v3` link carries `v3_version` (no `meta` when
/// `None`); every other request is answered by `answer(request line, body)`. Returns the API URL.
pub async fn scripted_api(
    uaa: Option<String>,
    v3_version: Option<&str>,
    answer: impl Fn(&str, &str) -> Scripted + Send + Sync + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let uaa = uaa.unwrap_or_else(|| api.clone());
    let meta = v3_version.map_or(String::new(), |v| format!(r#","meta":{{"version":"{v}"}}"#));
    let root =
        format!(r#"{{"links":{{"login":{{"href":"{uaa}"}},"cloud_controller_v3":{{"href":"{api}/v3"{meta}}}}}}}"#);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        for _ in 0..50 {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let (root, answer) = (root.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let Some(head_end) = read_head(&mut conn, &mut buf).await else { return };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    if !read_more(&mut conn, &mut buf).await {
                        return;
                    }
                }
                let line = head.lines().next().unwrap_or_default().to_owned();
                let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                let (status, extra, body) =
                    if line.starts_with("GET / ") { ("200 OK", String::new(), root) } else { answer(&line, &body) };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    api
}

/// A forward proxy: CONNECT tunnels and absolute-form requests, counting connections.
pub async fn start_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        for _ in 0..200 {
            let Ok((mut client, _)) = listener.accept().await else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_head(&mut client, &mut buf).await.is_none() {
                    return;
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let connect = head.starts_with("CONNECT ");
                let authority = if connect {
                    target
                } else {
                    target.trim_start_matches("http://").split('/').next().unwrap_or_default().to_owned()
                };
                if !authority.starts_with("127.0.0.1:") {
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&authority).await else { return };
                if connect {
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                } else if upstream.write_all(&buf).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("http://{addr}"), count)
}
