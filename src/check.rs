//! `check`: reports the version running in production, `[{"app_guid", "droplet_guid"}]`, or `[]`.
//!
//! Concourse runs it every minute for every pipeline, so it costs three requests: discovery (`GET /`), the
//! token, and one app list that finds production in the source's space (a fourth on a Cloud Controller older
//! than API 3.175, whose apps do not name their current droplet) (see
//! [`inspect::production`](crate::inspect::production)). The version Concourse passes in is not needed: the
//! answer is what runs now, so a push or restage made by hand shows up as a new version and nothing else does.

use anyhow::{Context, Result};

use crate::cf::CfClient;
use crate::cf::apps::App;
use crate::inspect::production::{self, Production};
use crate::log;
use crate::protocol::{CheckRequest, Version};

pub async fn run(request: CheckRequest) -> Result<Vec<Version>> {
    let source = request.source;
    let cf = CfClient::connect(source.client_settings()?).await?;
    let listed =
        cf.apps().list_with_included(&production::query(&source)).await.context("cannot list the production app")?;
    let production = match production::find(&listed, &source)? {
        Production::Named(app) => Some(app),
        Production::SwappedIn(app, phase) => {
            log::info(format_args!(
                "'{}' is being renamed by a deploy ({phase}); production is its candidate '{}'",
                source.names.production, app.name
            ));
            Some(app)
        }
        Production::Nothing(why) => {
            log::info(why);
            None
        }
    };
    let version = match production {
        Some(app) => current(&cf.apps().with_current_droplet(app.clone()).await?),
        None => None,
    };
    Ok(version.into_iter().collect())
}

/// The app's version, if it has a current droplet.
fn current(app: &App) -> Option<Version> {
    match app.current_droplet_guid().filter(|guid| !guid.is_empty()) {
        Some(droplet) => {
            log::info(format_args!("production: app '{}' {} running droplet {droplet}", app.name, app.guid));
            Some(Version::of(app, droplet))
        }
        None => {
            log::info(format_args!("app '{}' {} has no current droplet yet", app.name, app.guid));
            None
        }
    }
}
