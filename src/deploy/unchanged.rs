//! `skip_unchanged: true`: a deploy that would change nothing does nothing. Before the lock, this put's bits,
//! manifest and env are compared with production's: the bits by their content digest, and the manifest by the
//! digest of its normalised form, against the two the audit of production's current droplet records (a
//! production without them counts as changed); the manifest also by Cloud Foundry's own
//! `POST /v3/spaces/:guid/manifest_diff` (what was changed on the foundation since); the env by
//! `GET /v3/apps/:guid/environment_variables` against what the put would set. All the same: no write at all, and
//! production's version is the answer, with `skipped: unchanged`.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use super::context::Context;
use super::inputs::{Payload, Prepared};
use crate::bits::file_digest;
use crate::cf::CfClient;
use crate::cf::apps::App;
use crate::cf::manifests::DiffEntry;
use crate::config::OutParams;
use crate::log;
use crate::manifest::{AppManifest, Normalised};
use crate::protocol::{MetadataField, Version, VersionResult};
use crate::record::Audit;

/// What a deploy gives production, compared with what production runs and recorded in its audit.
#[derive(Debug, Clone)]
pub(crate) struct Fingerprint {
    bits: Bits,
    pub(crate) manifest: Normalised,
    /// The env the manifest and the params set (production's other variables are kept by the deploy).
    env: BTreeMap<String, String>,
}

impl Fingerprint {
    /// The fingerprint of a deploy of `prepared` to `production_name`; `bits_digest` is the app bits' content
    /// digest (when they were gathered).
    pub(crate) async fn of(
        prepared: &Prepared,
        bits_digest: Option<String>,
        params: &OutParams,
        production_name: &str,
    ) -> Result<Fingerprint> {
        let bits = match &prepared.payload {
            Payload::App(_) => bits_digest.map_or(Bits::Unknown, Bits::Digest),
            Payload::Droplet { tgz, .. } => {
                let tgz = tgz.clone();
                Bits::Digest(
                    tokio::task::spawn_blocking(move || file_digest(&tgz)).await?.context("digesting the droplet")?,
                )
            }
            Payload::Production => Bits::Production,
            Payload::Docker { .. } | Payload::Restage => Bits::Unknown,
        };
        let minimal;
        let manifest = match &prepared.manifest {
            Some(manifest) => manifest,
            None => {
                minimal = AppManifest::minimal(production_name);
                &minimal
            }
        };
        let mut env = manifest.env();
        env.extend(params.environment_variables.clone());
        let manifest =
            manifest.normalised(production_name, params.health_check.as_ref(), params.environment_variables.keys());
        Ok(Fingerprint { bits, manifest, env })
    }

    /// The bits and manifest digests a deploy records; `blue` is the production it replaces (whose bits a
    /// redeploy of its droplet has).
    pub(crate) fn digests(&self, blue: Option<&App>) -> (Option<String>, Option<String>) {
        let bits = match &self.bits {
            Bits::Digest(digest) => Some(digest.clone()),
            Bits::Production => blue.and_then(recorded).and_then(|audit| audit.bits_digest),
            Bits::Unknown => None,
        };
        (bits, Some(self.manifest.digest()))
    }

    /// The audit with this fingerprint recorded; `blue` as for [`Fingerprint::digests`].
    pub(crate) fn record(&self, audit: &mut Audit, blue: Option<&App>) {
        (audit.bits_digest, audit.manifest_digest) = self.digests(blue);
    }
}

/// What tells a deploy's bits apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bits {
    /// Their content digest (app bits, a droplet tarball).
    Digest(String),
    /// Production's own droplet, deployed again: the bits production runs.
    Production,
    /// Nothing: a docker image (its tag may move), a restage (it builds anew).
    Unknown,
}

/// The audit recorded for the droplet `app` runs now.
fn recorded(app: &App) -> Option<Audit> {
    let droplet = app.current_droplet_guid()?;
    Audit::from_annotations(&app.metadata.annotations).filter(|audit| audit.describes(droplet))
}

/// How this put compares with production.
#[derive(Debug, Default)]
struct Comparison {
    bits_same: bool,
    manifest_digest_same: bool,
    /// `manifest_diff`'s answer (`None`: not asked, or it failed: a Cloud Controller without it).
    diff: Option<Vec<DiffEntry>>,
    /// The names of the env vars the put would set to another value (`None`: the foundation was not asked, as
    /// the digests alone already tell a change).
    env_changed: Option<Vec<String>>,
}

impl Comparison {
    fn unchanged(&self) -> bool {
        self.bits_same && self.manifest_digest_same && none_in(&self.diff) && none_in(&self.env_changed)
    }

    /// What differs, in a few words.
    fn changes(&self) -> Vec<&'static str> {
        let asked = self.env_changed.is_some();
        [
            (self.bits_same, "the bits"),
            (self.manifest_digest_same, "the manifest (since the last deploy)"),
            (!asked || none_in(&self.diff), "the manifest (as Cloud Foundry sees it)"),
            (!asked || none_in(&self.env_changed), "the env"),
        ]
        .into_iter()
        .filter_map(|(same, what)| (!same).then_some(what))
        .collect()
    }
}

/// Whether `found` was looked for and is empty.
fn none_in<T>(found: &Option<Vec<T>>) -> bool {
    found.as_ref().is_some_and(Vec::is_empty)
}

/// Compares the put with `production`. `full`: ask the foundation even when the recorded digests already
/// differ (a dry run shows everything).
async fn compare(
    cf: &CfClient,
    space_guid: &str,
    production: &App,
    fingerprint: &Fingerprint,
    full: bool,
) -> Result<Comparison> {
    let audit = recorded(production);
    let audit = audit.as_ref();
    let mut comparison = Comparison {
        bits_same: match &fingerprint.bits {
            Bits::Digest(digest) => audit.and_then(|a| a.bits_digest.as_ref()) == Some(digest),
            Bits::Production => true,
            Bits::Unknown => false,
        },
        manifest_digest_same: audit.and_then(|a| a.manifest_digest.clone()) == Some(fingerprint.manifest.digest()),
        ..Comparison::default()
    };
    let recorded_same = comparison.bits_same && comparison.manifest_digest_same;
    if !full && !recorded_same {
        return Ok(comparison);
    }
    let env = async {
        let current = cf.apps().env_vars(&production.guid).await.context("reading production's env")?;
        let changed =
            fingerprint.env.iter().filter(|(name, value)| current.get(*name) != Some(*value)).map(|(n, _)| n.clone());
        anyhow::Ok(changed.collect::<Vec<_>>())
    };
    let diff = async {
        // Production's bindings the manifest does not list are kept: they go beside the manifest's.
        let bound = match fingerprint.manifest.services().is_empty() {
            true => Vec::new(),
            false => {
                let yaml = cf.apps().manifest(&production.guid).await?;
                AppManifest::literal(&format!("the manifest of {}", production.name), &yaml, &production.name)?
                    .services()
            }
        };
        let yaml = fingerprint.manifest.diff_yaml(&bound);
        // An endpoint CC calls experimental, and one older Cloud Controllers lack: without its answer the manifest
        // counts as changed, and the put deploys.
        match cf.manifests().diff(space_guid, &yaml).await {
            Ok(diff) => anyhow::Ok(Some(diff.diff)),
            Err(e) => {
                log::warn(format_args!(
                    "skip_unchanged: Cloud Foundry's manifest diff failed, so the manifest counts as changed: {e}"
                ));
                Ok(None)
            }
        }
    };
    let (env, diff) = tokio::try_join!(env, diff)?;
    comparison.env_changed = Some(env);
    comparison.diff = diff;
    Ok(comparison)
}

/// Before the lock: production's version with `skipped: unchanged` when this put would change nothing, `None`
/// (with a line saying what changed) otherwise.
pub(crate) async fn skip(ctx: &Context, production: Option<&App>) -> Result<Option<VersionResult>> {
    let (Some(fingerprint), Some(production)) = (&ctx.fingerprint, production) else {
        log::info("skip_unchanged: nothing runs in production yet; deploying");
        return Ok(None);
    };
    let production = match production.current_droplet_guid() {
        Some(_) => production.clone(),
        None => ctx.cf.apps().with_current_droplet(production.clone()).await?,
    };
    let Some(droplet) = production.current_droplet_guid().map(str::to_owned) else {
        log::info(format_args!("skip_unchanged: {} has no droplet; deploying", production.name));
        return Ok(None);
    };
    let comparison = compare(&ctx.cf, &ctx.target.space.guid, &production, fingerprint, false).await?;
    if !comparison.unchanged() {
        log::info(format_args!("skip_unchanged: {} changed; deploying", comparison.changes().join(", ")));
        return Ok(None);
    }
    log::success(format_args!(
        "unchanged: the bits, the manifest and the env are what {} runs (droplet {droplet}); nothing was deployed",
        production.name
    ));
    Ok(Some(VersionResult {
        version: Version::of(&production, &droplet),
        metadata: vec![
            MetadataField::new("skipped", "unchanged"),
            MetadataField::new("app", &production.name),
            MetadataField::new("app_guid", &production.guid),
            MetadataField::new("droplet", &droplet),
        ],
    }))
}

/// For a dry run: whether the bits and the env changed, and Cloud Foundry's manifest diff (env values never
/// shown: only the names of the variables that would change).
pub(crate) async fn describe(ctx: &Context, production: &App) -> Result<()> {
    let Some(fingerprint) = &ctx.fingerprint else { return Ok(()) };
    let comparison = compare(&ctx.cf, &ctx.target.space.guid, production, fingerprint, true).await?;
    let said = |same: bool| if same { "unchanged" } else { "changed" };
    log::info(format_args!(
        "skip_unchanged: bits {}",
        match fingerprint.bits {
            Bits::Unknown => "changed (a docker image or a restage is always deployed)",
            _ => said(comparison.bits_same),
        }
    ));
    log::info(format_args!("skip_unchanged: manifest since the last deploy {}", said(comparison.manifest_digest_same)));
    let diff = comparison.diff.as_deref().unwrap_or_default();
    if comparison.diff.is_some() {
        log::info(format_args!("skip_unchanged: manifest diff from Cloud Foundry: {} change(s)", diff.len()));
    }
    for entry in diff {
        let show = |v: &Option<serde_json::Value>| v.as_ref().map_or("-".to_owned(), ToString::to_string);
        match &entry.from {
            Some(from) => log::output(&format!("{} {}: from {from}", entry.op, entry.path)),
            None => log::output(&format!("{} {}: {} → {}", entry.op, entry.path, show(&entry.was), show(&entry.value))),
        }
    }
    match comparison.env_changed.as_deref().unwrap_or_default() {
        [] => log::info("skip_unchanged: env unchanged"),
        names => log::info(format_args!("skip_unchanged: env changed: {} (values not shown)", names.join(", "))),
    }
    let verdict = if comparison.unchanged() { "would skip: nothing changed" } else { "would deploy" };
    log::info(format_args!("skip_unchanged: a real put {verdict}"));
    Ok(())
}
