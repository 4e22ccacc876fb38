//! Health checks as Diego runs them: `port` (a TCP connect), `http` (a GET expecting 200 within the invocation
//! timeout) and `process` (the process is alive), with Diego's failure messages.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::state::HealthCheck;

/// Runs one check against an instance listening on `port`.
pub async fn check(health: &HealthCheck, port: u16, default_timeout: Duration) -> Result<(), String> {
    let timeout = health.invocation_timeout.map(Duration::from_secs).unwrap_or(default_timeout);
    match health.kind.as_str() {
        "port" => match tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(format!("Failed to make TCP connection to port {port}: connection refused")),
            Err(_) => Err(format!("Failed to make TCP connection to port {port}: timeout when making TCP connection")),
        },
        "http" => {
            let endpoint = health.endpoint.clone().unwrap_or_else(|| "/".to_string());
            match tokio::time::timeout(timeout, http_status(port, &endpoint)).await {
                Ok(Ok(200)) => Ok(()),
                Ok(Ok(status)) => Err(format!(
                    "Failed to make HTTP request to '{endpoint}' on port {port}: received status code {status}"
                )),
                Ok(Err(_)) => {
                    Err(format!("Failed to make HTTP request to '{endpoint}' on port {port}: connection refused"))
                }
                Err(_) => Err(format!(
                    "Failed to make HTTP request to '{endpoint}' on port {port}: timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                )),
            }
        }
        _ => Ok(()),
    }
}

/// The message of a check forced to fail through the admin API, worded like the real one.
pub fn forced_failure(health: &HealthCheck, port: u16) -> String {
    match health.kind.as_str() {
        "http" => format!(
            "Failed to make HTTP request to '{}' on port {port}: received status code 500",
            health.endpoint.as_deref().unwrap_or("/")
        ),
        "process" => "Process health check failed".to_string(),
        _ => format!("Failed to make TCP connection to port {port}: connection refused"),
    }
}

async fn http_status(port: u16, endpoint: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "GET {endpoint} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: diego-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line"))
}
