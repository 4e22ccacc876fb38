//! What every step of a put shares: the CF client, the request, the org and space, the phases and the put's
//! deadline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use super::carry;
use super::phases::Phases;
use super::plan::Target;
use super::push::ZipAhead;
use super::unchanged::Fingerprint;
use crate::cf::CfClient;
use crate::config::{OutParams, Source};
use crate::log;
use crate::protocol::BuildEnv;
use crate::verify::route_client::RouteClient;

/// How long a single CF job (deleting an app or a route, applying a manifest) may take.
pub(crate) const JOB_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What every step of a put shares.
pub(crate) struct Context {
    pub(crate) cf: CfClient,
    pub(crate) source: Source,
    pub(crate) params: OutParams,
    pub(crate) put_dir: PathBuf,
    pub(crate) build: BuildEnv,
    pub(crate) target: Target,
    /// How verification and probes reach app routes (through `source.router_address` when given).
    pub(crate) route_client: RouteClient,
    /// The smoke-test program in the put's inputs.
    pub(crate) smoke_test: Option<PathBuf>,
    /// Production's network policies as read before the lock.
    pub(crate) production_policies: carry::Listed,
    /// The app bits' packaging, started before the lock (a deploy of app bits).
    pub(crate) zip_ahead: Option<ZipAhead>,
    /// What a deploy gives production (bits, manifest, env), for `skip_unchanged` and production's audit.
    pub(crate) fingerprint: Option<Fingerprint>,
    pub(crate) phases: Phases,
    /// When the put's overall `timeout` runs out.
    pub(crate) deadline: Instant,
}

impl Context {
    /// `limit`, cut to what is left of the put's overall timeout; an error once nothing is left.
    pub(crate) fn within(&self, limit: Duration) -> Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!("the put's overall timeout ({}) ran out", log::human_duration(self.params.timeouts.overall));
        }
        Ok(limit.min(left))
    }

    /// What this put is, for its error messages: `deploy` or `rollback`.
    pub(crate) fn what(&self) -> &'static str {
        if self.params.rollback { "rollback" } else { "deploy" }
    }
}
