//! `/backend`: one GET of `BACKEND_URL`, another app's URL (typically its internal route,
//! `http://backend.apps.internal:8080/version`). Under cf-sim the request goes through the container
//! network's proxy that `CF_SIM_C2C_PROXY` names (`http://<identity>@host:port`, the identity sent as
//! `Proxy-Authorization: Basic`); without it, straight to the URL's host, as on Cloud Foundry.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A call takes at most this long, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `/backend` calls, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    url: String,
    /// `host:port` the request is sent to.
    connect_to: String,
    /// The request target: the whole URL through a proxy, else its path.
    target: String,
    host: String,
    proxy_credentials: Option<String>,
}

impl Backend {
    /// From `BACKEND_URL` and `CF_SIM_C2C_PROXY`; an error names the variable that cannot be used.
    pub fn new(url: &str, proxy: Option<&str>) -> Result<Backend, String> {
        let (host, path) = split_url(url).ok_or_else(|| format!("BACKEND_URL: not an http:// URL: {url}"))?;
        let authority = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
        let (connect_to, target, proxy_credentials) = match proxy {
            None => (authority, path.to_string(), None),
            Some(proxy) => {
                let (address, _) = split_url(proxy).ok_or("CF_SIM_C2C_PROXY: not an http:// URL")?;
                let (identity, address) = address.split_once('@').ok_or("CF_SIM_C2C_PROXY: no identity")?;
                (address.to_string(), url.to_string(), Some(base64(format!("{identity}:").as_bytes())))
            }
        };
        Ok(Backend { url: url.to_string(), connect_to, target, host: host.to_string(), proxy_credentials })
    }

    /// The backend's status and body, or why it could not be reached.
    pub async fn call(&self) -> Result<(u16, String), String> {
        let exchange = async {
            let mut stream = TcpStream::connect(&self.connect_to).await.map_err(|e| e.to_string())?;
            let proxy = self
                .proxy_credentials
                .as_ref()
                .map(|c| format!("Proxy-Authorization: Basic {c}\r\n"))
                .unwrap_or_default();
            let request =
                format!("GET {} HTTP/1.1\r\nHost: {}\r\n{proxy}Connection: close\r\n\r\n", self.target, self.host);
            stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
            parse_answer(&answer).ok_or_else(|| "the connection closed without an answer".to_string())
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(result) => result.map_err(|e| format!("{}: {e}", self.url)),
            Err(_) => Err(format!("{}: no answer within {}s", self.url, CALL_TIMEOUT.as_secs())),
        }
    }
}

/// `http://AUTHORITY/PATH` → (authority, `/path`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    (!authority.is_empty()).then_some((authority, path))
}

/// Status and body of an HTTP/1.1 answer read to its end (`Connection: close`, no chunking expected).
fn parse_answer(answer: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            let sextet = (n >> (18 - 6 * i)) & 63;
            out.push(if i <= chunk.len() { ALPHABET[sextet as usize] as char } else { '=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_gets_the_whole_url_and_the_identity() {
        let backend =
            Backend::new("http://backend.apps.internal:8080/version", Some("http://guid-1@127.0.0.1:9")).unwrap();
        assert_eq!(backend.connect_to, "127.0.0.1:9");
        assert_eq!(backend.target, "http://backend.apps.internal:8080/version");
        assert_eq!(backend.proxy_credentials.as_deref(), Some("Z3VpZC0xOg=="));
        let direct = Backend::new("http://backend.apps.internal", None).unwrap();
        assert_eq!((direct.connect_to.as_str(), direct.target.as_str()), ("backend.apps.internal:80", "/"));
    }

    #[test]
    fn unusable_urls_name_their_variable() {
        assert!(Backend::new("https://x", None).unwrap_err().starts_with("BACKEND_URL"));
        assert!(Backend::new("http://x/", Some("http://127.0.0.1:9")).unwrap_err().starts_with("CF_SIM_C2C_PROXY"));
    }

    #[test]
    fn base64_pads_like_rfc_4648() {
        assert_eq!((base64(b"f"), base64(b"fo"), base64(b"foo")), ("Zg==".into(), "Zm8=".into(), "Zm9v".into()));
    }
}
