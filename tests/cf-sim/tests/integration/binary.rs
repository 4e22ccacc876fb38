//! The `cf-sim` binary: one JSON ready line on stdout within a second, near-zero idle CPU, and every app instance
//! stopped on SIGTERM, and killed by the guardian even when the binary is SIGKILLed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Api, alive, app_zip, group_members, poll, send};
use cf_sim::testkit::{self, CompressionMethod};

fn start_binary() -> (Child, Value, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .args([
            "--stop-grace-ms",
            "1000",
            "--health-check-interval-ms",
            "200",
            "--organization",
            "bin-org",
            "--space",
            "bin-space",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let elapsed = started.elapsed();
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));
    (child, info, elapsed)
}

/// CPU time (user + system, in clock ticks) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

async fn pushed_instance_pids(info: &Value) -> Vec<u32> {
    let api_base = info["api"].as_str().unwrap();
    let token = crate::common::password_token(
        info["uaa"].as_str().unwrap(),
        info["username"].as_str().unwrap(),
        info["password"].as_str().unwrap(),
        None,
    )
    .await
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let api = Api { base: api_base.to_string(), token, ca_pem: None };
    api.push("bin-app", app_zip()).await;
    let pids = send("GET", &format!("{api_base}/_sim/instances"), &[], Vec::new(), None).await.unwrap().json();
    pids["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u32).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_its_ready_line_idles_and_stops_its_apps_on_sigterm() {
    let (mut child, info, elapsed) = start_binary();
    assert!(elapsed < Duration::from_secs(1), "ready after {elapsed:?}");
    for key in [
        "api",
        "uaa",
        "log_cache",
        "router",
        "domain",
        "organization",
        "space",
        "username",
        "password",
        "client_id",
        "client_secret",
    ] {
        assert!(info[key].as_str().is_some_and(|v| !v.is_empty()), "ready line lacks {key}: {info}");
    }
    assert_eq!(info["organization"], "bin-org");
    assert!(info["password"].as_str().unwrap().starts_with("sim-password-"), "generated, distinctive credentials");

    let before = cpu_ticks(child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cpu_ticks(child.id()) - before;
    assert!(idle <= 10, "idle binary used {idle} ticks in 2 s");

    let pids = pushed_instance_pids(&info).await;
    assert_eq!(pids.len(), 1);
    assert!(alive(pids[0]));
    // SAFETY: sending SIGTERM to the child process we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(stopping.elapsed() < Duration::from_secs(10), "the binary did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(
        pids.iter().all(|&pid| !alive(pid) && group_members(pid).is_empty()),
        "an instance survived SIGTERM of the binary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guardian_kills_the_apps_of_a_sigkilled_binary() {
    let (mut child, info, _) = start_binary();
    let pids = pushed_instance_pids(&info).await;
    assert!(alive(pids[0]));
    child.kill().unwrap();
    child.wait().unwrap();
    poll(Duration::from_secs(5), || async {
        pids.iter().all(|&pid| !alive(pid) && group_members(pid).is_empty()).then_some(())
    })
    .await;
}

/// Peak resident memory of a process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_to_disk_with_flat_memory() {
    let (mut child, info, _) = start_binary();
    let api_base = info["api"].as_str().unwrap();
    let login = crate::common::password_token(
        info["uaa"].as_str().unwrap(),
        info["username"].as_str().unwrap(),
        info["password"].as_str().unwrap(),
        None,
    )
    .await;
    let api = Api {
        base: api_base.to_string(),
        token: login.json()["access_token"].as_str().unwrap().to_string(),
        ca_pem: None,
    };
    let app = api.create_app("bulky").await;
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let zip = testkit::zip(CompressionMethod::Stored, &[("blob.bin", &chunk.repeat(64), Some(0o644))]);
    let before = peak_rss_kb(child.id());
    api.upload_package(&app, zip).await;
    let growth_mb = (peak_rss_kb(child.id()) - before) / 1024;
    assert!(growth_mb < 32, "a 64 MiB upload grew the sim's peak memory by {growth_mb} MiB");
    child.kill().unwrap();
    child.wait().unwrap();
}
