//! The candidate before the swap (phases 2–4, for a deploy and a rollback alike): it holds the deploy lock and
//! knows what it has created (its temporary route), so every failure before the swap cleans up after itself —
//! production was never touched, the candidate goes (or is kept as `<app>-failed`) and the lock is released.

use std::time::Duration;

use anyhow::Result;

use super::abort;
use super::carry;
use super::context::Context;
use super::failure;
use super::gate::{self, GateReport, GateTarget};
use super::lock::{self, Lock, Take};
use super::plan::Plan;
use super::push::{self, Pushed};
use super::recovery;
use super::routes::{self, RouteTarget};
use super::task;
use crate::cf::apps::App;
use crate::record::{Journal, Phase};
use crate::verify::smoke::SmokeEnv;

/// How long the checks run before the journal says `verifying`.
const VERIFYING_NOTED: Duration = Duration::from_secs(1);

/// A candidate under the deploy lock, not yet swapped in.
pub(crate) struct Candidate {
    pub(crate) lock: Lock,
    /// The guid of its temporary route, once it has one.
    pub(crate) temp_route_guid: Option<String>,
}

impl Candidate {
    /// Takes the lock (`take`: a new app, or `<app>-previous` renamed), recovering any deploy that died holding it;
    /// the package for app bits zipped ahead is created from then on.
    pub(crate) async fn take(ctx: &Context, journal: Journal, take: Take) -> Result<Candidate> {
        let lock = abort::or_abort(lock::acquire(
            &ctx.cf,
            &ctx.target.space.guid,
            &ctx.source.names.green(),
            journal,
            take,
            ctx.within(ctx.params.timeouts.lock)?,
            |claimed| recovery::recover(ctx, claimed),
        ))
        .await?;
        if let Some(ahead) = &ctx.zip_ahead {
            ahead.create_package(&ctx.cf, &lock.app.guid);
        }
        Ok(Candidate { lock, temp_route_guid: None })
    }

    pub(crate) fn app(&self) -> &App {
        &self.lock.app
    }

    /// `outcome` as it is; a failure first removes the candidate and releases the lock (so the next deploy need
    /// not wait for the lease), and then names the phase.
    pub(crate) async fn or_release<T>(&self, ctx: &Context, outcome: Result<T>) -> Result<T> {
        match outcome {
            Ok(value) => Ok(value),
            Err(e) => Err(failure::before_swap(ctx, self, e).await),
        }
    }

    /// Phase push: the manifest applied (with the temporary route), the plan written to the journal, the bits
    /// staged into a droplet, `params.task` run on it, the app started and healthy.
    pub(crate) async fn push(&mut self, ctx: &Context, plan: &Plan) -> Result<Pushed> {
        let pushed = async {
            let mut pushed = push::to_droplet(ctx, &self.lock, plan, &mut self.temp_route_guid).await?;
            if let Some(params) = &ctx.params.task {
                task::run(ctx, &self.lock, params).await?;
            }
            self.start(ctx, &mut pushed).await?;
            Ok(pushed)
        };
        let pushed = abort::or_abort(pushed).await;
        self.or_release(ctx, pushed).await
    }

    /// Phase start of a rollback: a temporary route `temp_url` mapped to the candidate (and written to the
    /// journal), the app started and healthy.
    pub(crate) async fn start_again(&mut self, ctx: &Context, temp_url: Option<&str>) -> Result<Pushed> {
        let started = async {
            if let Some(url) = temp_url {
                let space_guid = &ctx.target.space.guid;
                let mut targets = routes::resolve_manifest_routes(&ctx.cf, space_guid, &[url.to_owned()]).await?;
                let guid = targets[0].ensure(&ctx.cf, space_guid).await?;
                ctx.cf.routes().map_app(&guid, &self.lock.app.guid).await?;
                self.temp_route_guid = Some(guid);
                self.lock.record(|j| j.temp_route = self.temp_route_guid.clone()).await?;
            }
            let production = self.lock.journal().await.blue_guid;
            carry::policies_to(&ctx.cf, production.as_deref(), &self.lock.app, &ctx.production_policies).await?;
            let mut pushed = Pushed::default();
            self.start(ctx, &mut pushed).await?;
            Ok(pushed)
        };
        let started = abort::or_abort(started).await;
        self.or_release(ctx, started).await
    }

    async fn start(&self, ctx: &Context, pushed: &mut Pushed) -> Result<()> {
        let startup = ctx.within(ctx.params.timeouts.startup)?;
        push::start_and_wait(&ctx.cf, &self.lock.app.guid, &self.lock.app.name, pushed, startup).await
    }

    /// Phase verify: HTTP checks, smoke test and KPI probe against the candidate on its temporary route; with
    /// `production_runs`, the first production route is what the KPI probe compares with.
    pub(crate) async fn verify(
        &self,
        ctx: &Context,
        temp_route: Option<&str>,
        prod_routes: &[RouteTarget],
        production_runs: bool,
    ) -> Result<GateReport> {
        let verified = async {
            let scheme = ctx.source.route_scheme.as_str();
            let smoke_env = SmokeEnv {
                green_url: temp_route.map(|r| format!("{scheme}://{r}")).unwrap_or_default(),
                green_app: self.lock.app.name.clone(),
                green_app_guid: self.lock.app.guid.clone(),
                prod_urls: prod_routes.iter().map(|r| format!("{scheme}://{}", r.url)).collect(),
                cf_api: ctx.source.api.clone(),
                cf_org: ctx.target.org.name.clone(),
                cf_space: ctx.target.space.name.clone(),
                router_address: ctx.source.router_address.clone(),
            };
            let target = GateTarget {
                client: &ctx.route_client,
                temp_route,
                production_route: prod_routes.first().filter(|_| production_runs).map(|r| r.url.as_str()),
                smoke_test: ctx.smoke_test.as_deref(),
                smoke_env,
                put_dir: &ctx.put_dir,
                put_time_left: ctx.within(ctx.params.timeouts.overall)?,
            };
            // Recovery treats `verifying` as `pushing`: the journal says so only for checks that outlast
            // `VERIFYING_NOTED`, written in the background while they go on (the swap's own journal write waits
            // for it); quicker checks go straight on to `swapping`, one journal write instead of two in a row.
            let checked = gate::verify(&target, &ctx.params, ctx.within(ctx.params.timeouts.verify)?);
            tokio::pin!(checked);
            tokio::select! {
                report = &mut checked => return report,
                () = tokio::time::sleep(VERIFYING_NOTED) => {}
            }
            self.lock.record_behind(|j| j.phase = Phase::Verifying).await?;
            checked.await
        };
        self.or_release(ctx, abort::or_abort(verified).await).await
    }
}
