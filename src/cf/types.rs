//! Model pieces shared by every resource kind: links, metadata, relationships, lifecycle, checksums, warnings.
//!
//! Everything tolerates unknown fields and missing optional ones: the fixtures are upstream examples and real
//! CF versions differ in which fields they send.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `{"href": "...", "method": "POST"}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Link {
    #[serde(default, deserialize_with = "null_as_default")]
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// The `links` object. Some entries are `null` (e.g. `credhub` in the root document).
pub(crate) type Links = BTreeMap<String, Option<Link>>;

/// Labels and annotations as CF returns them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Metadata {
    #[serde(default, deserialize_with = "lenient_string_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "lenient_string_map")]
    pub annotations: BTreeMap<String, String>,
}

/// Labels and annotations to set in a create or PATCH; a `None` value deletes the key.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MetadataPatch {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, Option<String>>,
}

impl MetadataPatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), Some(value.into()));
        self
    }

    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), Some(value.into()));
        self
    }

    /// Removes the label in the PATCH.
    pub fn remove_label(mut self, key: impl Into<String>) -> Self {
        self.labels.insert(key.into(), None);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// `{"guid": "..."}`. Where CC may point at nothing, read it as an `Option<GuidRef>` with
/// [`guid_ref_or_none`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
pub struct GuidRef {
    pub guid: String,
}

impl GuidRef {
    pub fn new(guid: impl Into<String>) -> Self {
        GuidRef { guid: guid.into() }
    }
}

/// Reads a reference that may point at nothing: `null`, `{"guid": null}` (CC ≥ 3.175 renders an app without a
/// droplet as `current_droplet: {"data": {"guid": null}}`) or
/// `{}` are all `None`.
pub(crate) fn guid_ref_or_none<'de, D>(deserializer: D) -> Result<Option<GuidRef>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct MaybeGuid {
        #[serde(default)]
        guid: Option<String>,
    }
    Ok(Option::<MaybeGuid>::deserialize(deserializer)?.and_then(|m| m.guid).map(GuidRef::new))
}

/// A to-one relationship: `{"data": {"guid": "..."}}`. `{"data": null}`, `{"data": {"guid": null}}`, `{}` and a
/// `null` relationship all read as pointing at nothing.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ToOne {
    pub data: Option<GuidRef>,
}

impl<'de> Deserialize<'de> for ToOne {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default, deserialize_with = "guid_ref_or_none")]
            data: Option<GuidRef>,
        }
        Ok(ToOne { data: Option::<Raw>::deserialize(deserializer)?.and_then(|raw| raw.data) })
    }
}

impl ToOne {
    pub fn to(guid: impl Into<String>) -> Self {
        ToOne { data: Some(GuidRef::new(guid)) }
    }

    pub fn guid(&self) -> Option<&str> {
        self.data.as_ref().map(|d| d.guid.as_str())
    }
}

/// The `relationships` of a resource that belongs to an app (package, droplet, build):
/// `{"app": {"data": {"guid": "..."}}}`, read from CF and sent when creating one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AppRelationship {
    #[serde(default)]
    pub app: ToOne,
}

impl AppRelationship {
    pub fn to(app_guid: impl Into<String>) -> Self {
        AppRelationship { app: ToOne::to(app_guid) }
    }

    pub fn app_guid(&self) -> Option<&str> {
        self.app.guid()
    }
}

/// A to-many relationship: `{"data": [{"guid": "..."}, …]}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct ToMany {
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<GuidRef>,
}

/// How an app is built: `{"type":"buildpack","data":{"buildpacks":[…],"stack":"cflinuxfs4"}}` or
/// `{"type":"docker","data":{}}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Lifecycle {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: LifecycleData,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct LifecycleData {
    /// `None`/empty means auto-detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpacks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl Lifecycle {
    pub fn buildpack(buildpacks: Vec<String>, stack: Option<String>) -> Self {
        Lifecycle { kind: "buildpack".into(), data: LifecycleData { buildpacks: Some(buildpacks), stack } }
    }

    pub fn docker() -> Self {
        Lifecycle { kind: "docker".into(), data: LifecycleData::default() }
    }
}

/// A package or droplet checksum: `{"type":"sha256","value":"…"}` (value `null` until processed).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Checksum {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// One entry of a job's `warnings[]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Warning {
    #[serde(default, deserialize_with = "null_as_default")]
    pub detail: String,
}

/// The `{"warnings": [...]}` document.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Warnings {
    #[serde(default, deserialize_with = "null_as_default")]
    pub warnings: Vec<Warning>,
}

/// Who did it: `{"guid","name","email"}` (builds).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct CreatedBy {
    #[serde(default, deserialize_with = "null_as_default")]
    pub guid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
}

/// Reads `null` as the type's default (CF sends `null` for some empty maps and lists).
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string map whose values may arrive as other JSON scalars (numbers, booleans); those are stringified.
pub(crate) fn lenient_string_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}
