//! Sessions and blue-green: the new version runs in new processes, so whatever the old one kept in memory is
//! gone after the swap. The sample app counts visits per user (`/session`, by the `sid` cookie) in process
//! memory, or in Redis when one is bound. With a real `redis-server` (started here on loopback, bound as a
//! user-provided service so it reaches the app through VCAP_SERVICES) a user's counter carries on through the
//! swap, request after request; in memory it starts over on the new version.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cf_sim::Sim;
use serde_json::{Value, json};

use crate::harness;
use crate::util::deploy::{PutDir, deploy, wait_for, wait_until_serving};
use crate::util::sim::{connect, home_space, start_sim_with};
use crate::util::summary;

/// A `redis-server` on a free loopback port, stopped (SIGKILL, it keeps nothing) when dropped.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// `None` when redis-server is not installed (CI installs it; `PROOF_FULL` runs insist on it).
    fn start() -> Option<Redis> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            assert!(
                !harness::full(),
                "redis-server is not installed; tests/run.sh installs it (apt-get install redis-server)"
            );
            eprintln!("redis-server is not installed: skipping the sessions test (tests/run.sh installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis { child, port, _dir: dir };
        wait_for(&format!("redis-server to answer PING on port {port}"), Duration::from_secs(10), || redis.ping().ok());
        Some(redis)
    }

    fn ping(&self) -> std::io::Result<()> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"PING\r\n")?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer)?;
        if &answer == b"+PONG\r\n" { Ok(()) } else { Err(std::io::Error::other("not PONG")) }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `/session` visit of the user with session id `sid` (a new user without one): the answer and the
/// session id the app set, if it set one.
fn visit(sim: &Sim, app: &str, sid: Option<&str>) -> Result<(Value, Option<String>), String> {
    let router = sim.info().router.trim_start_matches("http://").to_owned();
    let host = format!("{app}.{}", sim.info().domain);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = crate::util::http_client()
            .resolve(&host, router.parse().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut request = client.get(format!("http://{host}/session"));
        if let Some(sid) = sid {
            request = request.header("Cookie", format!("sid={sid}"));
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.strip_prefix("sid="))
            .map(|c| c.split(';').next().unwrap_or_default().to_owned());
        let body = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        Ok((answer, cookie))
    })
}

fn params(version: &str) -> Value {
    json!({"path": "app", "manifest": "ci/manifest.yml", "environment_variables": {"APP_VERSION": version}, "drain": "2s"})
}

fn manifest(sim: &Sim, app: &str, services: &[&str]) -> String {
    let mut entry = json!({
        "name": app, "instances": 1, "memory": "64M",
        "health-check-type": "http", "health-check-http-endpoint": "/healthcheck",
        "routes": [{"route": format!("{app}.{}", sim.info().domain)}],
    });
    if !services.is_empty() {
        entry["services"] = json!(services);
    }
    serde_norway::to_string(&json!({"applications": [entry]})).unwrap()
}

/// Deploys v1 of `app`, visits three times, then deploys v2 while the same user keeps visiting; returns every
/// answer (count, store, version) in order.
fn visits_across_a_deploy(sim: &Sim, app: &str, services: &[&str]) -> Vec<(i64, String, String)> {
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(sim, app, services));
    deploy(sim, &put, app, params("v1"));
    wait_until_serving(sim, app, "v1");
    let (first, sid) = visit(sim, app, None).unwrap();
    let sid = sid.expect("the app sets a session cookie on the first visit");
    let answers = Mutex::new(vec![first]);
    for _ in 0..2 {
        answers.lock().unwrap().push(visit(sim, app, Some(&sid)).unwrap().0);
    }

    let stop = AtomicBool::new(false);
    let visitor = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match visit(sim, app, Some(&sid)) {
                    Ok((answer, _)) => answers.lock().unwrap().push(answer),
                    Err(e) => failures.push(e),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            failures
        });
        deploy(sim, &put, app, params("v2"));
        wait_until_serving(sim, app, "v2");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        handle.join().unwrap()
    });
    assert!(visitor.is_empty(), "{app}: session requests failed during the deploy: {visitor:?}");
    let answers = answers.lock().unwrap().clone();
    answers
        .iter()
        .map(|a| {
            (
                a["count"].as_i64().unwrap(),
                a["store"].as_str().unwrap_or_default().to_owned(),
                a["version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn sessions_survive_the_swap_only_outside_the_app() {
    let Some(redis) = Redis::start() else { return };
    let _heavy = harness::heavy();
    let sim = start_sim_with(|c| {
        c.route_propagation_delay_ms = 500;
        c.stop_grace_ms = 3000;
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cf = connect(&sim).await;
        let space = home_space(&cf, &sim).await;
        let credentials = [("uri".to_owned(), json!(format!("redis://127.0.0.1:{}", redis.port)))].into();
        cf.service_instances().create_user_provided(&space.guid, "sessions", &credentials).await.unwrap();
    });

    // With Redis: one counter, counting on through both versions.
    let with_redis = visits_across_a_deploy(&sim, "shop", &["sessions"]);
    let counts: Vec<i64> = with_redis.iter().map(|(count, _, _)| *count).collect();
    let expected: Vec<i64> = (1..=counts.len() as i64).collect();
    assert_eq!(counts, expected, "with Redis the user's counter never starts over: {with_redis:?}");
    assert!(with_redis.iter().all(|(_, store, _)| store == "redis"), "{with_redis:?}");
    let versions: Vec<&str> = with_redis.iter().map(|(_, _, v)| v.as_str()).collect();
    assert_eq!(versions.first(), Some(&"v1"));
    assert_eq!(versions.last(), Some(&"v2"), "the session carried on into v2: {with_redis:?}");
    let on_v2 = with_redis.iter().filter(|(_, _, v)| v == "v2").count();

    // In memory: the new version's process has never seen the user.
    let in_memory = visits_across_a_deploy(&sim, "cart", &[]);
    assert!(in_memory.iter().all(|(_, store, _)| store == "memory"), "{in_memory:?}");
    let last_v1 = in_memory.iter().filter(|(_, _, v)| v == "v1").map(|(c, _, _)| *c).max().unwrap();
    let first_v2 = in_memory.iter().find(|(_, _, v)| v == "v2").map(|(c, _, _)| *c).unwrap();
    assert!(last_v1 >= 3, "{in_memory:?}");
    assert_eq!(first_v2, 1, "in memory, the counter starts over on the new version: {in_memory:?}");

    eprintln!(
        "with Redis: {} visits counted 1..{} across the swap ({on_v2} on v2); in memory: {last_v1} on v1, then {first_v2} on v2",
        counts.len(),
        counts.len()
    );
    summary::record(
        "sessions",
        json!({"redis_visits": counts.len(), "redis_kept": true, "memory_last_v1": last_v1, "memory_first_v2": first_v2}),
    );
}
