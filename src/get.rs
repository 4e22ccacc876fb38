//! `in`: writes what a version deployed into the destination directory.
//!
//! Reads, never writes, CF: the apps called like production and its kept versions (one list, with their spaces
//! and organizations: the version's app is among them, and is read on its own only when it was renamed away), the
//! droplet and the app's generated manifest, fetched at once, plus the droplet's package when no audit
//! annotation records its checksum. From them it writes `metadata.json` and the one-value files `app_guid`,
//! `droplet_guid`, `url` and `app_name` (see [`inspect::details`](crate::inspect::details)); with
//! `download_droplet` the droplet is streamed to `droplet.tgz`. The same CF state always gives the same files and answer, as Concourse caches gets. A version
//! whose app or droplet is gone, or whose droplet belongs to another app, is an error naming the version.
//! The kept versions (`<app>-previous`, `<app>-previous-2`, …, what `rollback_to` takes) are listed in the
//! metadata as `kept`, from that list: a plain get makes five requests (`check` lists none: it stays at three).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::cf::apps::App;
use crate::cf::droplets::{Droplet, DropletState};
use crate::cf::orgs::Organization;
use crate::cf::paginate::Included;
use crate::cf::spaces::Space;
use crate::cf::types::Checksum;
use crate::cf::{CfClient, Error, ListParams};
use crate::config::{MAX_KEEP_PREVIOUS, Source};
use crate::inspect::details::{Details, Observed, audit_of};
use crate::inspect::production::same_name;
use crate::log;
use crate::manifest::AppManifest;
use crate::protocol::{InRequest, MetadataField, Version, VersionResult};

/// The file the droplet is downloaded to with `download_droplet: true`.
const DROPLET_FILE: &str = "droplet.tgz";
const METADATA_FILE: &str = "metadata.json";

pub async fn run(request: InRequest) -> Result<VersionResult> {
    let InRequest { source, params, version, dir } = request;
    let named = describe(&version);
    for guid in [&version.app_guid, &version.droplet_guid] {
        if !is_guid_like(guid) {
            bail!("{named} is not a version of this resource: '{guid}' is not a CF guid");
        }
    }
    let cf = CfClient::connect(source.client_settings()?).await?;

    let manifest_path = format!("/v3/apps/{}/manifest", version.app_guid);
    let (apps, droplets, named_apps) = (cf.apps(), cf.droplets(), named_apps(&source));
    let (listed, droplet, manifest) = tokio::join!(
        apps.list_with_included(&named_apps),
        droplets.find(&version.droplet_guid),
        cf.get_text(&manifest_path, "application/x-yaml"),
    );
    let listed = listed.context("cannot list the apps named like production and its kept versions")?;
    let AppInPlace { app, included } = match listed.resources.iter().find(|a| a.guid == version.app_guid) {
        Some(app) => AppInPlace { app: app.clone(), included: listed.included.clone() },
        None => {
            let app_path = format!("/v3/apps/{}?include=space.organization", version.app_guid);
            cf.get_opt::<AppInPlace>(&app_path).await?.ok_or_else(|| {
                anyhow!("{named} is no longer available: app {} does not exist (it was deleted)", version.app_guid)
            })?
        }
    };
    let app = cf.apps().with_current_droplet(app).await?;
    let (organization, space) = place(&included, &app);
    check_place(&named, &source, &app, organization.as_ref(), space.as_ref())?;
    if let Some(why) = no_longer_production(&source, &app, &version) {
        log::warn(format_args!("{named} is no longer production: {why}"));
    }
    let droplet = droplet?.ok_or_else(|| {
        anyhow!(
            "{named} is no longer available: droplet {} does not exist (CF deletes old droplets)",
            version.droplet_guid
        )
    })?;
    if droplet.app_guid() != Some(app.guid.as_str()) {
        bail!(
            "{named} is not a version of this resource: droplet {} belongs to app {}, not to app '{}' {}",
            droplet.guid,
            droplet.app_guid().unwrap_or("(none)"),
            app.name,
            app.guid
        );
    }
    let manifest = manifest.with_context(|| format!("cannot read the manifest of app '{}'", app.name))?;
    let manifest = AppManifest::literal(&format!("the manifest of app '{}'", app.name), &manifest, &app.name)?;
    let package_checksum = package_checksum(&cf, &app, &droplet).await?;

    let details = Details::new(Observed {
        version: &version,
        app: &app,
        organization: organization.as_ref().map(|o| o.name.as_str()),
        space: space.as_ref().map(|s| s.name.as_str()),
        droplet: &droplet,
        manifest: &manifest,
        package_checksum,
        route_scheme: source.route_scheme,
    });
    log::info(format_args!(
        "app '{}' {}, droplet {}{}",
        app.name,
        app.guid,
        droplet.guid,
        if details.droplet_is_current { "" } else { " (no longer the app's current droplet)" }
    ));
    if params.download_droplet {
        download(&cf, &droplet, &dir.join(DROPLET_FILE)).await?;
    }
    write_files(&dir, &details)?;
    let mut metadata = details.ui_metadata();
    if let Some(field) = kept_field(&source, app.space_guid(), listed.resources) {
        metadata.push(field);
    }
    Ok(VersionResult { version, metadata })
}

/// The apps called like production and like its kept versions, in every space the user sees, with their spaces
/// and organizations (`apps_list_message.rb` takes `include=space.organization`): the version's app is among
/// them unless it was renamed away or deleted, and so are the kept versions.
fn named_apps(source: &Source) -> ListParams {
    let kept = (1..=MAX_KEEP_PREVIOUS).map(|n| source.names.kept(n));
    let names: Vec<String> = std::iter::once(source.names.production.clone()).chain(kept).collect();
    ListParams::new().filter("names", &names).include("space.organization")
}

/// `version {app_guid: …, droplet_guid: …}`, for errors.
fn describe(version: &Version) -> String {
    format!("version {{app_guid: {}, droplet_guid: {}}}", version.app_guid, version.droplet_guid)
}

/// The `kept` metadata field: the kept versions in the app's space, the most recent first, each with the droplet
/// that `rollback_to` can name (`None` when there are none).
fn kept_field(source: &Source, space_guid: Option<&str>, apps: Vec<App>) -> Option<MetadataField> {
    let mut kept: Vec<(u32, App)> = apps
        .into_iter()
        .filter(|a| a.space_guid() == space_guid)
        .filter_map(|a| Some((source.names.kept_slot(&a.name, MAX_KEEP_PREVIOUS)?, a)))
        .collect();
    kept.sort_by_key(|(nth, _)| *nth);
    let listed: Vec<String> = kept
        .iter()
        .map(|(nth, a)| format!("{nth}: {} droplet {}", a.name, a.current_droplet_guid().unwrap_or("unknown")))
        .collect();
    (!listed.is_empty()).then(|| MetadataField::new("kept", listed.join(", ")))
}

/// Guids go into request paths, so only the characters of a guid are accepted.
fn is_guid_like(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `GET /v3/apps/:guid?include=space.organization`, or the version's app found in [`named_apps`].
#[derive(Deserialize)]
struct AppInPlace {
    #[serde(flatten)]
    app: App,
    #[serde(default)]
    included: Included,
}

/// The app's space and organization, when CF included them.
fn place(included: &Included, app: &App) -> (Option<Organization>, Option<Space>) {
    let space = included
        .get::<Space>("spaces")
        .unwrap_or_default()
        .into_iter()
        .find(|s| Some(s.guid.as_str()) == app.space_guid());
    let org = space.as_ref().and_then(|space| {
        included
            .get::<Organization>("organizations")
            .unwrap_or_default()
            .into_iter()
            .find(|o| Some(o.guid.as_str()) == space.org_guid())
    });
    (org, space)
}

/// A version belongs to the source's organization and space (its app may have been renamed since).
fn check_place(
    named: &str,
    source: &Source,
    app: &App,
    org: Option<&Organization>,
    space: Option<&Space>,
) -> Result<()> {
    if let (Some(org), Some(space)) = (org, space)
        && !(same_name(&org.name, &source.organization) && same_name(&space.name, &source.space))
    {
        bail!(
            "{named} is not a version of this resource: app '{}' is in organization '{}', space '{}', \
             not in organization '{}', space '{}'",
            app.name,
            org.name,
            space.name,
            source.organization,
            source.space
        );
    }
    Ok(())
}

/// Why `version` is no longer what production runs (its app renamed away, another droplet, a later deploy), if
/// it is not: a plain `get` of a version Concourse saw earlier may fetch what a rollback replaced.
fn no_longer_production(source: &Source, app: &App, version: &Version) -> Option<String> {
    if !same_name(&app.name, &source.names.production) {
        return Some(format!("its app is now '{}'", app.name));
    }
    let current = app.current_droplet_guid().unwrap_or_default();
    if current != version.droplet_guid {
        return Some(format!("'{}' runs droplet {current} now", app.name));
    }
    let now = Version::of(app, current);
    (version.deploy_id.is_some() && now != *version).then(|| {
        format!(
            "'{}' has been deployed again since, at {}",
            app.name,
            now.deployed_at.as_deref().unwrap_or("an unknown time")
        )
    })
}

/// The checksum of the package the droplet was staged from: recorded by `out` in the audit annotations, else
/// read from the droplet's package (CF prunes old packages: then it is unknown).
async fn package_checksum(cf: &CfClient, app: &App, droplet: &Droplet) -> Result<Option<Checksum>> {
    if let Some(value) = audit_of(app, &droplet.guid).and_then(|audit| audit.package_checksum) {
        return Ok(Some(Checksum { kind: Some("sha256".into()), value: Some(value) }));
    }
    let package_guid = droplet
        .links
        .get("package")
        .and_then(Option::as_ref)
        .and_then(|link| link.href.trim_end_matches('/').rsplit('/').next())
        .filter(|guid| is_guid_like(guid));
    let Some(package_guid) = package_guid else {
        return Ok(None);
    };
    let package = match cf.packages().find(package_guid).await {
        Ok(package) => package,
        Err(Error::Cf(e)) if e.status == Some(403) => None,
        Err(e) => return Err(e).context("cannot read the droplet's package"),
    };
    Ok(package.and_then(|p| p.data.checksum).filter(|c| c.value.is_some()))
}

/// Streams the droplet to `dest`.
async fn download(cf: &CfClient, droplet: &Droplet, dest: &Path) -> Result<()> {
    if let Some(image) = &droplet.image {
        bail!("droplet {} runs the docker image {image}: there are no droplet bits to download", droplet.guid);
    }
    if droplet.state != DropletState::Staged {
        bail!("droplet {} is {:?}, not STAGED: only staged droplets can be downloaded", droplet.guid, droplet.state);
    }
    let size = cf
        .droplets()
        .download(&droplet.guid, dest)
        .await
        .with_context(|| format!("cannot download droplet {}", droplet.guid))?;
    log::detail(format_args!("downloaded the droplet to {DROPLET_FILE} ({})", log::human_bytes(size)));
    Ok(())
}

/// `metadata.json` and the one-value files (no trailing newline, so `$(cat url)` and `load_var` read them as
/// they are).
fn write_files(dir: &Path, details: &Details) -> Result<()> {
    let mut json = serde_json::to_string_pretty(details)?;
    json.push('\n');
    let write = |name: &str, contents: &[u8]| {
        std::fs::write(dir.join(name), contents).with_context(|| format!("cannot write {}", dir.join(name).display()))
    };
    write(METADATA_FILE, json.as_bytes())?;
    for (name, value) in details.value_files() {
        write(name, value.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_guid_characters_reach_a_request_path() {
        assert!(is_guid_like("6f9a1c2e-0b3d-4e5f-8a7b-9c0d1e2f3a4b"));
        for bad in ["", "../v3/info", "a?b", "a/b", "a b", "%2e%2e"] {
            assert!(!is_guid_like(bad), "{bad}");
        }
    }
}
