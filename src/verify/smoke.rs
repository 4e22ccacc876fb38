//! The smoke-test command (`params.smoke_test`): a program from the build's inputs, run against the candidate
//! before it gets users. Its output is streamed into the build log as it happens (never to our stdout); a
//! non-zero exit or running past its timeout fails the deploy.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::log;

/// What the smoke test is told about the deploy, as environment variables.
#[derive(Debug, Clone, Default)]
pub(crate) struct SmokeEnv {
    /// `GREEN_URL`: the candidate's temporary route URL (empty for a `no-route` app).
    pub(crate) green_url: String,
    pub(crate) green_app: String,
    pub(crate) green_app_guid: String,
    /// `PROD_URLS`: the production route URLs, comma separated.
    pub(crate) prod_urls: Vec<String>,
    pub(crate) cf_api: String,
    pub(crate) cf_org: String,
    pub(crate) cf_space: String,
    /// `ROUTER_ADDRESS`: `source.router_address`, when set (send route traffic there, keep the Host header).
    pub(crate) router_address: Option<String>,
}

impl SmokeEnv {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("GREEN_URL", self.green_url.clone()),
            ("GREEN_APP", self.green_app.clone()),
            ("GREEN_APP_GUID", self.green_app_guid.clone()),
            ("PROD_URLS", self.prod_urls.join(",")),
            ("CF_API", self.cf_api.clone()),
            ("CF_ORG", self.cf_org.clone()),
            ("CF_SPACE", self.cf_space.clone()),
        ];
        if let Some(address) = &self.router_address {
            pairs.push(("ROUTER_ADDRESS", address.clone()));
        }
        pairs
    }
}

/// The executable of `params.smoke_test.path`, checked before anything is deployed.
pub(crate) fn resolve(put_dir: &Path, path: &str) -> Result<PathBuf> {
    let full = put_dir.join(path);
    let metadata = std::fs::metadata(&full).with_context(|| {
        format!("params.smoke_test.path {path} does not exist in the put inputs ({})", full.display())
    })?;
    if !metadata.is_file() {
        bail!("params.smoke_test.path {path} is not a file");
    }
    use std::os::unix::fs::PermissionsExt;
    if metadata.permissions().mode() & 0o111 == 0 {
        bail!("params.smoke_test.path {path} is not executable (chmod +x it, or add a #! line and the x bit)");
    }
    Ok(full)
}

/// Runs `program args…` in `work_dir` with the deploy's env added; returns when it exits 0.
pub(crate) async fn run(
    program: &Path,
    args: &[String],
    work_dir: &Path,
    env: &SmokeEnv,
    timeout: Duration,
) -> Result<()> {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(work_dir)
        .envs(env.pairs())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().with_context(|| format!("cannot start smoke test {}", program.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let relay = async { tokio::join!(relay_lines(stdout), relay_lines(stderr)) };
    let outcome = tokio::time::timeout(timeout, async {
        relay.await;
        child.wait().await
    })
    .await;
    match outcome {
        Ok(status) => {
            let status = status.context("waiting for the smoke test")?;
            if !status.success() {
                let code = status.code().map(|c| format!("exit status {c}")).unwrap_or_else(|| "a signal".into());
                bail!("smoke test {} failed with {code}; its output is above", program.display());
            }
            Ok(())
        }
        Err(_) => {
            kill_group(&child);
            bail!("smoke test {} did not finish within {}", program.display(), log::human_duration(timeout));
        }
    }
}

/// Relays the program's output line by line; bytes that are not UTF-8 are shown replaced, and the relay goes
/// on (stopping would close the pipe and kill a test that passes).
async fn relay_lines(stream: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).await.is_ok_and(|read| read > 0) {
        let text = String::from_utf8_lossy(&line);
        log::output(text.trim_end_matches(['\n', '\r']));
        line.clear();
    }
}

/// Kills the smoke test and everything it started (it runs in its own process group).
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a negative pid signals the process group we created with process_group(0).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn env() -> SmokeEnv {
        SmokeEnv {
            green_url: "http://g.example.com".into(),
            prod_urls: vec!["http://a".into(), "http://b".into()],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn passes_env_and_args_and_succeeds_on_exit_zero() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(
            dir.path(),
            "smoke.sh",
            r#"[ "$GREEN_URL" = http://g.example.com ] && [ "$PROD_URLS" = http://a,http://b ] && [ "$1" = --quick ] && pwd > cwd.txt"#,
        );
        run(&program, &["--quick".into()], dir.path(), &env(), Duration::from_secs(10)).await.unwrap();
        let cwd = std::fs::read_to_string(dir.path().join("cwd.txt")).unwrap();
        assert_eq!(Path::new(cwd.trim()).canonicalize().unwrap(), dir.path().canonicalize().unwrap());
    }

    #[tokio::test]
    async fn non_zero_exit_fails_with_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "smoke.sh", "echo checking; exit 3");
        let err = run(&program, &[], dir.path(), &env(), Duration::from_secs(10)).await.unwrap_err();
        assert!(err.to_string().ends_with("failed with exit status 3; its output is above"), "{err}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let program = script(dir.path(), "smoke.sh", &format!("(sleep 2; touch {}) & sleep 30", marker.display()));
        let started = std::time::Instant::now();
        let err = run(&program, &[], dir.path(), &env(), Duration::from_millis(300)).await.unwrap_err();
        assert!(err.to_string().contains("did not finish within 300ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child of the smoke test outlived the timeout");
    }

    #[tokio::test]
    async fn output_that_is_not_utf8_is_relayed_and_the_test_still_passes() {
        let dir = tempfile::tempdir().unwrap();
        // After the bad line, enough output to fill a pipe nobody reads any more.
        let body = "printf 'bad \\377 byte\\n'; i=0; while [ $i -lt 5000 ]; do echo 'line after line after line'; i=$((i+1)); done";
        let program = script(dir.path(), "smoke.sh", body);
        run(&program, &[], dir.path(), &env(), Duration::from_secs(20)).await.unwrap();
    }

    #[test]
    fn resolve_rejects_missing_and_non_executable_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(resolve(dir.path(), "nope.sh").unwrap_err().to_string().contains("does not exist"));
        std::fs::write(dir.path().join("plain.sh"), "echo").unwrap();
        assert!(resolve(dir.path(), "plain.sh").unwrap_err().to_string().contains("is not executable"));
        script(dir.path(), "ok.sh", "true");
        assert!(resolve(dir.path(), "ok.sh").is_ok());
    }
}
