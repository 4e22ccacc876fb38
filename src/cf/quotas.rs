//! Memory quotas: how much memory the organization and the space may use and use now, so a deploy can tell
//! before it pushes whether the candidate fits beside production.
//!
//! The organization's quota is `relationships.quota` of `GET /v3/organizations/:guid`, read with
//! `GET /v3/organization_quotas/:guid`; a space quota is `relationships.quota` of the space (often none), read
//! with `GET /v3/space_quotas/:guid`. Usage comes from `GET /v3/organizations/:guid/usage_summary` and, from CC
//! API 3.200 on, `GET /v3/spaces/:guid/usage_summary`. The presenters render an unlimited value (CC's -1) as
//! `null` (`app/presenters/v3/organization_quota_presenter.rb`, `space_quota_presenter.rb`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cf::client::CfClient;
use crate::cf::error::Result;
use crate::cf::orgs::Organization;
use crate::cf::spaces::Space;
use crate::cf::types::{Links, ToOne, null_as_default};

/// An organization or space quota (`GET /v3/organization_quotas/:guid`, `GET /v3/space_quotas/:guid`), as far
/// as apps go. Fixtures: `organization_quota.json`, `space_quota.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Quota {
    pub guid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub apps: QuotaApps,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
}

/// A quota's `apps` limits; `None` is unlimited.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct QuotaApps {
    #[serde(default)]
    pub total_memory_in_mb: Option<u64>,
    #[serde(default)]
    pub per_process_memory_in_mb: Option<u64>,
    #[serde(default)]
    pub(crate) total_instances: Option<u64>,
}

/// `GET /v3/organizations/:guid/usage_summary` and `GET /v3/spaces/:guid/usage_summary`. Fixtures:
/// `organization_usage_summary.json`, `space_usage_summary.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct UsageSummary {
    #[serde(default, deserialize_with = "null_as_default")]
    pub usage_summary: Usage,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
}

/// What the organization or space uses now: memory of its started processes and their instances.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Usage {
    #[serde(default)]
    pub memory_in_mb: Option<u64>,
    #[serde(default)]
    pub started_instances: Option<u64>,
}

/// The memory side of one quota: its name, its limit (`None`: unlimited) and what is in use (`None`: CC does not
/// say, e.g. the space usage summary before CC API 3.200).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryQuota {
    pub name: String,
    pub limit_mb: Option<u64>,
    pub used_mb: Option<u64>,
}

/// The memory quotas a push into a space is held to: the organization's (`None` if the user cannot read it) and
/// the space's (`None` if the space has none, or the user cannot read it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryQuotas {
    pub org: Option<MemoryQuota>,
    pub space: Option<MemoryQuota>,
}

/// A quota that cannot take `needed_mb` more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaShortfall {
    /// `organization` or `space`.
    pub scope: &'static str,
    pub name: String,
    pub limit_mb: u64,
    pub used_mb: u64,
    pub needed_mb: u64,
}

impl fmt::Display for QuotaShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} quota '{}' allows {} MB of memory, {} MB are in use and {} MB more are needed ({} MB short)",
            self.scope,
            self.name,
            self.limit_mb,
            self.used_mb,
            self.needed_mb,
            (self.used_mb + self.needed_mb).saturating_sub(self.limit_mb)
        )
    }
}

impl MemoryQuotas {
    /// The first quota (space, then organization, the order of CC's `AppMaxMemoryPolicy`) whose limit cannot take
    /// `needed_mb` more on top of what is in use; `None` when both can, or when a quota is unlimited or its usage
    /// unknown.
    pub fn shortfall(&self, needed_mb: u64) -> Option<QuotaShortfall> {
        [("space", &self.space), ("organization", &self.org)].into_iter().find_map(|(scope, quota)| {
            let quota = quota.as_ref()?;
            let (limit_mb, used_mb) = (quota.limit_mb?, quota.used_mb?);
            (used_mb + needed_mb > limit_mb).then(|| QuotaShortfall {
                scope,
                name: quota.name.clone(),
                limit_mb,
                used_mb,
                needed_mb,
            })
        })
    }
}

impl CfClient {
    /// The organization and space memory quotas that a push into `space` is held to, with current usage. A
    /// quota or usage the user may not read (404) is left out rather than failing.
    pub async fn memory_quotas(&self, org: &Organization, space: &Space) -> Result<MemoryQuotas> {
        let org_quota = self.memory_quota(&org.relationships.quota, "organization_quotas", "organizations", &org.guid);
        let space_quota = self.memory_quota(&space.relationships.quota, "space_quotas", "spaces", &space.guid);
        let (org, space) = tokio::try_join!(org_quota, space_quota)?;
        Ok(MemoryQuotas { org, space })
    }

    /// The memory limit of the quota `quota` points at (`/v3/<quotas>/:guid`), with the usage of its owner
    /// (`/v3/<owners>/<owner_guid>/usage_summary`) only when there is a limit to compare it with.
    async fn memory_quota(
        &self,
        quota: &ToOne,
        quotas: &str,
        owners: &str,
        owner_guid: &str,
    ) -> Result<Option<MemoryQuota>> {
        let Some(guid) = quota.guid() else { return Ok(None) };
        let Some(quota) = self.get_opt::<Quota>(&format!("/v3/{quotas}/{guid}")).await? else { return Ok(None) };
        let limit_mb = quota.apps.total_memory_in_mb;
        let used_mb = match limit_mb {
            Some(_) => {
                let usage = format!("/v3/{owners}/{owner_guid}/usage_summary");
                self.get_opt::<UsageSummary>(&usage).await?.and_then(|u| u.usage_summary.memory_in_mb)
            }
            None => None,
        };
        Ok(Some(MemoryQuota { name: quota.name.unwrap_or(quota.guid), limit_mb, used_mb }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit_mb: Option<u64>, used_mb: Option<u64>) -> Option<MemoryQuota> {
        Some(MemoryQuota { name: "small".into(), limit_mb, used_mb })
    }

    #[test]
    fn a_shortfall_names_the_quota_and_the_numbers() {
        let quotas = MemoryQuotas { org: quota(Some(4096), Some(1024)), space: quota(Some(2048), Some(1536)) };
        assert_eq!(quotas.shortfall(512), None);
        let short = quotas.shortfall(1024).unwrap();
        assert_eq!(short.scope, "space");
        assert_eq!(
            short.to_string(),
            "the space quota 'small' allows 2048 MB of memory, 1536 MB are in use and 1024 MB more are needed (512 MB short)"
        );
        let org_only = MemoryQuotas { space: None, ..quotas };
        assert_eq!(org_only.shortfall(4000).unwrap().scope, "organization");
    }

    #[test]
    fn unlimited_or_unknown_never_falls_short() {
        let quotas = MemoryQuotas { org: quota(None, Some(1 << 20)), space: quota(Some(1), None) };
        assert_eq!(quotas.shortfall(1 << 30), None);
        assert_eq!(MemoryQuotas::default().shortfall(1 << 30), None);
    }
}
