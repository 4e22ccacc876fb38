//! Phase 4: the candidate proves itself before it gets users — HTTP checks on its temporary route, the smoke
//! test, and the KPI probe with its gates (including the comparison with production measured in the same run).

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use super::canary::CanaryReport;
use crate::config::OutParams;
use crate::log;
use crate::verify::http_checks::{self, CheckOutcome};
use crate::verify::kpi::{self, ProbeStats, Verdict};
use crate::verify::route_client::RouteClient;
use crate::verify::smoke::{self, SmokeEnv};

/// What verification measured, for the log and the put's metadata.
#[derive(Debug, Default)]
pub(crate) struct GateReport {
    pub(crate) checks: Vec<CheckOutcome>,
    pub(crate) smoke_test_passed: Option<bool>,
    pub(crate) candidate: Option<ProbeStats>,
    pub(crate) production: Option<ProbeStats>,
    /// Both apps' real traffic while the candidate served beside blue (`params.canary`).
    pub(crate) canary: Option<CanaryReport>,
}

impl GateReport {
    /// One line: `3 HTTP checks passed, smoke test passed, KPI 200 requests, 0.0% errors, …`.
    pub(crate) fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.checks.is_empty() {
            parts.push(format!("{} HTTP check(s) passed", self.checks.len()));
        }
        if self.smoke_test_passed == Some(true) {
            parts.push("smoke test passed".into());
        }
        if let Some(stats) = &self.candidate {
            parts.push(format!("KPI {}", stats.summary()));
        }
        if parts.is_empty() { "instances healthy".into() } else { parts.join("; ") }
    }
}

/// Everything the gate needs to reach the candidate and production.
pub(crate) struct GateTarget<'a> {
    pub(crate) client: &'a RouteClient,
    /// The candidate's temporary route (`None` for a no-route app).
    pub(crate) temp_route: Option<&'a str>,
    /// Production's first route, for the relative KPI gate (`None` on a first deploy).
    pub(crate) production_route: Option<&'a str>,
    pub(crate) smoke_test: Option<&'a Path>,
    pub(crate) smoke_env: SmokeEnv,
    pub(crate) put_dir: &'a Path,
    /// What is left of the put's overall `timeout`: a smoke test's own timeout cannot go past it.
    pub(crate) put_time_left: Duration,
}

/// Runs every check the params ask for; `time_limit` bounds the HTTP checks and (unless it sets its own) the
/// smoke test.
pub(crate) async fn verify(target: &GateTarget<'_>, params: &OutParams, time_limit: Duration) -> Result<GateReport> {
    let mut report = GateReport::default();
    if let Some(route) = target.temp_route {
        let checks = if params.verify.is_empty() { vec![http_checks::default_check()] } else { params.verify.clone() };
        log::info(format_args!("HTTP checks on {route}"));
        let deadline = Instant::now() + time_limit;
        report.checks = http_checks::run(target.client, route, &checks, deadline, Duration::from_secs(1)).await?;
    }
    if let (Some(program), Some(smoke)) = (target.smoke_test, &params.smoke_test) {
        log::info(format_args!("smoke test {}", smoke.path));
        let timeout = smoke.timeout.map_or(time_limit, |own| own.min(target.put_time_left));
        smoke::run(program, &smoke.args, target.put_dir, &target.smoke_env, timeout).await?;
        log::detail("smoke test passed");
        report.smoke_test_passed = Some(true);
    }
    if let (Some(kpi_params), Some(route)) = (&params.kpi, target.temp_route) {
        let paths: Vec<String> = kpi_params.paths.iter().map(|p| p.display()).collect();
        log::info(format_args!(
            "KPI probe: {} requests, {} at a time, over {}, after {} warm-up request(s)",
            kpi_params.requests,
            kpi_params.concurrency,
            paths.join(", "),
            kpi_params.warmup
        ));
        let production = kpi_params.max_p95_ratio.and(target.production_route);
        let measured = kpi::measure(target.client, route, production, kpi_params).await;
        if let (Some(prod), Some(stats)) = (production, &measured.production) {
            log::detail(format_args!("production ({prod}), measured interleaved: {}", stats.summary()));
        }
        log::detail(format_args!("candidate ({route}): {}", measured.candidate.summary()));
        let verdict = kpi::evaluate(kpi_params, &measured.candidate, measured.production.as_ref());
        report.candidate = Some(measured.candidate);
        report.production = measured.production;
        match verdict {
            Verdict::Fail(why) => bail!("KPI gate failed: {why}"),
            Verdict::TooFew(why) => log::warn(format_args!("KPI gates did not judge: {why}")),
            Verdict::Pass(text) => log::detail(format_args!("KPI gates {text}")),
        }
    }
    Ok(report)
}
