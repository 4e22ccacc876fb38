//! `POST /v3/spaces/:guid/manifest_diff`: the changes a manifest would make to the space's apps, as Cloud
//! Controller computes them.
//!
//! Follows space_manifests_controller.rb (`diff_manifest`, `validate_content_type!`, `parsed_yaml`,
//! `check_version_is_supported!`, `parsed_app_manifests`), space_diff_manifest.rb (`generate_diff`: unit
//! normalisation, the kept keys of processes, services and metadata, pruning of processes and routes by their
//! identifier, including its deletion from the array it iterates) and the json-diff gem 0.4.1 (`JsonDiff.diff` with
//! `include_was`, its array pairing by similarity and its move rings). The app's side is the generated manifest of
//! `GET /v3/apps/:guid/manifest` with the web process merged into the app level.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use serde_norway::Mapping;

use super::{Yaml, app_manifest, app_spec, human_readable_bytes};
use crate::cc::error::{ApiError, ApiResult};
use crate::config::CcApiVersion;
use crate::shared::Ctx;

/// `AppManifestMessage.allowed_keys`, dasherized: the app-level keys `generate_diff` compares.
const RECOGNIZED_KEYS: [&str; 32] = [
    "buildpack",
    "buildpacks",
    "command",
    "disk-quota",
    "log-rate-limit-per-second",
    "docker",
    "env",
    "health-check-http-endpoint",
    "health-check-invocation-timeout",
    "health-check-interval",
    "health-check-timeout",
    "health-check-type",
    "readiness-health-check-http-endpoint",
    "readiness-health-check-type",
    "readiness-health-check-invocation-timeout",
    "readiness-health-check-interval",
    "instances",
    "metadata",
    "memory",
    "lifecycle",
    "name",
    "no-route",
    "processes",
    "random-route",
    "default-route",
    "routes",
    "services",
    "sidecars",
    "stack",
    "timeout",
    "cnb-credentials",
    "features",
];

/// `filter_manifest_app_hash`: the keys of a `processes:` entry that are compared, in `slice`'s order.
const PROCESS_KEYS: [&str; 16] = [
    "type",
    "command",
    "user",
    "disk_quota",
    "log-rate-limit-per-second",
    "health-check-http-endpoint",
    "health-check-invocation-timeout",
    "health-check-interval",
    "health-check-type",
    "readiness-health-check-http-endpoint",
    "readiness-health-check-invocation-timeout",
    "readiness-health-check-interval",
    "readiness-health-check-type",
    "instances",
    "memory",
    "timeout",
];

/// `SpaceDiffManifest::IDENTIFIERS` (sidecars, also listed there, are refused before the diff).
fn identifier(key: &str) -> Option<&'static str> {
    match key {
        "processes" => Some("type"),
        "routes" => Some("route"),
        _ => None,
    }
}

/// The first CC API version with the endpoint (080a393846, released in 3.88.0).
const DIFF_SINCE: CcApiVersion = CcApiVersion(3, 88, 0);
/// The first version whose rules cf-sim models: the last to change what is compared, `features` (d04c8c7a41).
/// Older ones compared other keys (readiness checks from 3.145.0, log rates from 3.126.0, route protocols from
/// 3.105.0, app-level memory and disk until 3.103.0).
const MODELLED_SINCE: CcApiVersion = CcApiVersion(3, 197, 0);
/// Before this version a new app's `features` raised NoMethodError (`slice!` on nil), fixed in ff9ac83b1a.
const NEW_APP_FEATURES_SINCE: CcApiVersion = CcApiVersion(3, 217, 0);

/// The largest body `parsed_yaml` reads.
const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// `SpaceManifestsController#diff_manifest`.
pub(super) async fn diff(
    State(ctx): State<Ctx>,
    Path(space_guid): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> ApiResult<Response> {
    let version = ctx.config.cc_api_version;
    if !version.at_least(DIFF_SINCE) {
        return Err(ApiError::unknown_request());
    }
    if !version.at_least(MODELLED_SINCE) {
        return Err(ApiError::unprocessable(format!(
            "cf-sim does not model manifest_diff before CC API {MODELLED_SINCE} (space_diff_manifest.rb compared \
             other keys then); this foundation presents {version}"
        )));
    }
    // validate_content_type!, a before_action: `Mime::Type.lookup(content_type) == :yaml`.
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    if !matches!(media_type.as_deref(), Some("application/x-yaml" | "text/yaml")) {
        return Err(ApiError::bad_request("Content-Type must be yaml"));
    }
    let state = ctx.state();
    state.space(&space_guid)?;
    let document = parsed_yaml(&raw)?;
    // check_version_is_supported!: `!version || version == 1`.
    let schema = document.get("version").unwrap_or(&Yaml::Null);
    if !matches!(schema, Yaml::Null | Yaml::Bool(false)) && !ruby_eq(schema, &Yaml::from(1)) {
        return Err(ApiError::unprocessable("Unsupported manifest schema version. Currently supported versions: [1]."));
    }
    let applications = document.get("applications").unwrap_or(&Yaml::Null);
    if blank(applications) {
        return Err(ApiError::unprocessable("Cannot parse manifest with no 'applications' field."));
    }
    // `parsed_app_manifests.map(&:to_hash)` raises NoMethodError, which nothing rescues, on anything but hashes.
    let apps: Vec<Mapping> = applications
        .as_sequence()
        .and_then(|list| list.iter().map(|a| a.as_mapping().cloned()).collect())
        .ok_or_else(ApiError::unhandled)?;
    // compound_error!: every app's errors in one answer, with the first one's status.
    let mut errors = Vec::new();
    for (index, app) in apps.iter().enumerate() {
        if let Err(e) = validate(index, app) {
            errors.push(e);
        }
    }
    if let Some(first) = errors.first() {
        let body = json!({"errors": errors.iter().map(ApiError::to_json).collect::<Vec<_>>()});
        return Ok((first.status, Json(body)).into_response());
    }
    let mut changes = Vec::new();
    for (index, app) in apps.into_iter().enumerate() {
        let existing = existing_app(&state, &space_guid, &app, version)?;
        if existing.is_none() && app.contains_key("features") && !version.at_least(NEW_APP_FEATURES_SINCE) {
            return Err(ApiError::unhandled());
        }
        changes.extend(app_diff(index, app, existing)?);
    }
    let mut answer = Mapping::new();
    answer.insert("diff".into(), Yaml::Sequence(changes.into_iter().map(Op::into_yaml).collect()));
    // Serialized from the ordered mapping, so keys keep CC's order.
    let body = serde_json::to_vec(&Yaml::Mapping(answer)).map_err(|_| ApiError::unknown_error())?;
    Ok((StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response())
}

/// AppManifestMessage's validations, as `apply_manifest` models them, named as `errors_for_message` names them:
/// by the app's name, or by its index when the name is blank (`name: must not be empty`, `string: true`).
fn validate(index: usize, app: &Mapping) -> ApiResult<()> {
    let name = app.get("name").unwrap_or(&Yaml::Null);
    if blank(name) {
        return Err(ApiError::unprocessable(format!("For application at index {index}: Name must not be empty")));
    }
    if !name.is_string() {
        let detail = format!("For application '{}': Name must be a string", ruby_to_s(name));
        return Err(ApiError::unprocessable(detail));
    }
    let message = serde_json::to_value(app).map_err(|_| ApiError::unhandled())?;
    app_spec(message.as_object().ok_or_else(ApiError::unhandled)?).map(drop)
}

/// `ApplicationController#parsed_yaml`: at most 1 MB, a hash at the top. Psych's syntax errors are rescued nowhere.
fn parsed_yaml(raw: &[u8]) -> ApiResult<Mapping> {
    if raw.len() > MAX_MANIFEST_BYTES {
        return Err(ApiError::bad_request("Manifest size is too large. The maximum supported size is 1MB."));
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        // Psych.safe_load("") is false.
        return Err(ApiError::message_parse("invalid request body"));
    }
    let document: Yaml = serde_norway::from_slice(raw).map_err(|e| {
        if e.to_string().contains("duplicate entry") {
            ApiError::unprocessable("cf-sim does not model a manifest with a duplicate key (Psych keeps the last one)")
        } else {
            ApiError::unhandled()
        }
    })?;
    // Psych.safe_load(aliases: false) raises Psych::BadAlias on an alias (an anchor alone is read).
    if has_alias(&String::from_utf8_lossy(raw)) {
        return Err(ApiError::bad_request("Manifest does not support Anchors and Aliases"));
    }
    refuse_tags(&document)?;
    match document {
        Yaml::Mapping(mapping) => Ok(mapping),
        _ => Err(ApiError::message_parse("invalid request body")),
    }
}

/// Whether a YAML text uses an alias: a `*name` where a node begins (a line's start, after the indicators `- `,
/// `? `, `: `, `[`, `{` or `,`), outside quoted scalars, comments and block scalars. serde_norway resolves aliases
/// without telling, so they are found in the text.
fn has_alias(text: &str) -> bool {
    // The indentation of the line that opened a block scalar: more indented lines are its content.
    let mut block_parent: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(parent) = block_parent {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block_parent = None;
        }
        let (mut node_start, mut quote, mut block) = (true, None, false);
        let mut previous = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' {
                    chars.next();
                }
            } else if c == '#' && previous.is_whitespace() {
                break;
            } else if !c.is_whitespace() {
                let followed_by_space = chars.peek().is_none_or(|n| n.is_whitespace());
                match c {
                    '*' if node_start => return true,
                    '"' | '\'' if node_start => quote = Some(c),
                    '|' | '>' if node_start => block = true,
                    '0'..='9' | '+' | '-' if block => {}
                    _ => block = false,
                }
                node_start = matches!(c, '[' | '{' | ',') || matches!(c, '-' | '?' | ':') && followed_by_space;
            }
            previous = c;
        }
        if block {
            block_parent = Some(indent);
        }
    }
    false
}

/// YAML tags are not modelled (Psych's safe_load resolves or refuses them class by class).
fn refuse_tags(value: &Yaml) -> ApiResult<()> {
    match value {
        Yaml::Tagged(tagged) => Err(ApiError::unprocessable(format!(
            "cf-sim does not model YAML tags in manifests (Cloud Controller's Psych.safe_load reads '{}')",
            tagged.tag
        ))),
        Yaml::Sequence(items) => items.iter().try_for_each(refuse_tags),
        Yaml::Mapping(map) => map.iter().try_for_each(|(k, v)| refuse_tags(k).and(refuse_tags(v))),
        _ => Ok(()),
    }
}

/// The app named exactly so (`space.app_models.find { |app| app.name == name }`, case-sensitive) as its generated
/// manifest with the web process's keys merged in; `None` for an app the space does not have.
fn existing_app(
    state: &crate::state::State,
    space_guid: &str,
    app: &Mapping,
    version: CcApiVersion,
) -> ApiResult<Option<Mapping>> {
    let name = app.get("name").and_then(Yaml::as_str);
    let Some(found) = state.apps.values().find(|a| a.space_guid == space_guid && Some(a.name.as_str()) == name) else {
        return Ok(None);
    };
    let document = app_manifest(state, &found.common.guid, version)?;
    let mut hash = document["applications"][0].as_mapping().cloned().unwrap_or_default();
    let web = hash
        .get("processes")
        .and_then(Yaml::as_sequence)
        .and_then(|list| list.iter().find(|p| p.get("type").and_then(Yaml::as_str) == Some("web")))
        .and_then(Yaml::as_mapping)
        .cloned();
    // `existing_app_hash.merge(web_process_hash)`. (Its `disk-quota` copy changes nothing: app-level disk quotas
    // are never compared.)
    for (key, value) in web.unwrap_or_default() {
        hash.insert(key, value);
    }
    Ok(Some(hash))
}

/// `generate_diff` for one app of the manifest.
fn app_diff(index: usize, app: Mapping, existing: Option<Mapping>) -> ApiResult<Vec<Op>> {
    let app = filter_app(normalize_units(app))?;
    let mut existing = existing.unwrap_or_default();
    let mut changes = Vec::new();
    for (key, value) in &app {
        let Some(key) = key.as_str().filter(|k| RECOGNIZED_KEYS.contains(k)) else { continue };
        let existing_value = existing.get_mut(key);
        let nested = existing_value.as_deref().is_some_and(present) && identifier(key).is_some();
        if let Some(existing_value) = existing_value {
            if nested {
                remove_default_missing_fields(existing_value, key, value);
            }
            if key == "features" && present(existing_value) {
                slice_features(existing_value, value);
            }
        }
        // "To preserve backwards compatibility": app-level memory and disk quota are never compared.
        if !nested && ["disk_quota", "disk-quota", "memory"].contains(&key) {
            continue;
        }
        let before = existing.get(key).unwrap_or(&Yaml::Null);
        for mut op in json_diff(before, value, "") {
            op.path = format!("/applications/{index}/{key}{}", op.path);
            if op.op == "replace" && op.was.is_none() {
                op.op = "add";
            }
            changes.push(op);
        }
    }
    Ok(changes)
}

/// `filter_manifest_app_hash`: processes, services and metadata reduced to the keys that are compared.
fn filter_app(mut app: Mapping) -> ApiResult<Mapping> {
    let empty_entry = |list: &[Yaml]| list.len() == 1 && list[0].as_mapping().is_some_and(Mapping::is_empty);
    if let Some(processes) = app.get("processes") {
        let list = processes.as_sequence().ok_or_else(ApiError::unhandled)?;
        let sliced = list
            .iter()
            .map(|p| p.as_mapping().map(|p| Yaml::Mapping(slice(p, &PROCESS_KEYS))))
            .collect::<Option<Vec<Yaml>>>()
            .ok_or_else(ApiError::unhandled)?;
        let sliced = normalize_units_list(sliced);
        if empty_entry(&sliced) {
            app.shift_remove("processes");
        } else {
            app.insert("processes".into(), Yaml::Sequence(sliced));
        }
    }
    if let Some(services) = app.get("services") {
        let list = services.as_sequence().ok_or_else(ApiError::unhandled)?;
        let sliced: Vec<Yaml> = list
            .iter()
            .map(|s| match s {
                Yaml::Mapping(entry) => Yaml::Mapping(slice(entry, &["name", "parameters"])),
                other => other.clone(),
            })
            .collect();
        if empty_entry(&sliced) {
            app.shift_remove("services");
        } else {
            app.insert("services".into(), Yaml::Sequence(sliced));
        }
    }
    if let Some(metadata) = app.get("metadata") {
        let sliced = slice(metadata.as_mapping().ok_or_else(ApiError::unhandled)?, &["labels", "annotations"]);
        if sliced.is_empty() {
            app.shift_remove("metadata");
        } else {
            app.insert("metadata".into(), Yaml::Mapping(sliced));
        }
    }
    Ok(app)
}

/// `Hash#slice`: the given keys that are present, in the order given.
fn slice(hash: &Mapping, keys: &[&str]) -> Mapping {
    keys.iter().filter_map(|k| hash.get(*k).map(|v| (Yaml::from(*k), v.clone()))).collect()
}

fn normalize_units_list(list: Vec<Yaml>) -> Vec<Yaml> {
    list.into_iter()
        .map(|item| match item {
            Yaml::Mapping(hash) => Yaml::Mapping(normalize_units(hash)),
            other => other,
        })
        .collect()
}

/// `normalize_units`: memory and disk quotas in megabytes (`1G` → `1024M`), log rates human-readable (`1024K` →
/// `1M`), `-1` and `0` as strings; a value that does not convert becomes CC's message, as a string.
fn normalize_units(mut hash: Mapping) -> Mapping {
    for key in ["memory", "disk-quota", "disk_quota"] {
        if let Some(value) = hash.get(key).filter(|v| !v.is_null()) {
            let mb = match convert_to_bytes(value, key) {
                Ok(Some(bytes)) => format!("{}M", (bytes as f64 / 1_048_576.0) as i64),
                Ok(None) => "M".to_string(),
                Err(message) => message,
            };
            hash.insert(key.into(), Yaml::String(mb));
        }
    }
    let key = "log-rate-limit-per-second";
    if let Some(value) = hash.get(key).filter(|v| !v.is_null()) {
        let text = ruby_to_s(value);
        let normalized = if text == "-1" || text == "0" {
            Yaml::String(text)
        } else {
            match convert_to_bytes(value, key) {
                Ok(Some(bytes)) => Yaml::String(human_readable_bytes(bytes)),
                Ok(None) => Yaml::Null,
                Err(message) => Yaml::String(message),
            }
        };
        hash.insert(key.into(), normalized);
    }
    hash
}

/// `ByteConverter#convert_to_b` (`ByteQuantity.to_bytes`): `None` for a blank value, CC's message for a value that
/// does not start as a number or has no supported unit.
fn convert_to_bytes(value: &Yaml, attribute: &str) -> Result<Option<i64>, String> {
    if blank(value) {
        return Ok(None);
    }
    super::byte_quantity(&ruby_to_s(value), attribute).map(Some)
}

/// Ruby's `to_s` of a scalar.
fn ruby_to_s(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => serde_norway::to_string(other).unwrap_or_default(),
    }
}

/// ActiveSupport's `blank?`.
fn blank(value: &Yaml) -> bool {
    match value {
        Yaml::Null | Yaml::Bool(false) => true,
        Yaml::String(s) => s.chars().all(char::is_whitespace),
        Yaml::Sequence(list) => list.is_empty(),
        Yaml::Mapping(map) => map.is_empty(),
        _ => false,
    }
}

fn present(value: &Yaml) -> bool {
    !blank(value)
}

/// `remove_default_missing_fields`: an existing process or route the manifest does not name is deleted, and of one
/// it names, the keys the manifest leaves out (or sets to null). CC deletes from the array it is iterating with
/// `each_with_index`, so the element after a deleted one is skipped: it stays, unpruned.
fn remove_default_missing_fields(existing: &mut Yaml, key: &str, value: &Yaml) {
    let (Some(id), Some(list)) = (identifier(key), existing.as_sequence_mut()) else { return };
    let wanted: &[Yaml] = value.as_sequence().map(Vec::as_slice).unwrap_or_default();
    let mut i = 0;
    while i < list.len() {
        let resource_id = list[i].get(id).cloned().unwrap_or(Yaml::Null);
        let matching = wanted.iter().find(|w| ruby_eq(w.get(id).unwrap_or(&Yaml::Null), &resource_id));
        match matching {
            None => {
                list.remove(i);
            }
            Some(entry) => {
                if let Some(resource) = list[i].as_mapping_mut() {
                    resource.retain(|k, _| entry.get(k).is_some_and(|v| !v.is_null()));
                }
            }
        }
        i += 1;
    }
}

/// `remove_unspecified_app_features`: ActiveSupport's `slice!` to the manifest's feature names, in its order.
fn slice_features(existing: &mut Yaml, value: &Yaml) {
    let (Some(hash), Some(wanted)) = (existing.as_mapping(), value.as_mapping()) else { return };
    let sliced: Mapping = wanted.keys().filter_map(|k| hash.get(k).map(|v| (k.clone(), v.clone()))).collect();
    *existing = Yaml::Mapping(sliced);
}

/// One change of json-diff: `add`, `remove`, `replace` or `move` (whose `from` CC leaves relative to the key).
#[derive(Debug, Clone, PartialEq)]
struct Op {
    op: &'static str,
    path: String,
    from: Option<String>,
    was: Option<Yaml>,
    value: Option<Yaml>,
}

impl Op {
    fn add(path: String, value: &Yaml) -> Op {
        Op { op: "add", path, from: None, was: None, value: Some(value.clone()) }
    }

    /// `was` only when the old value is not nil.
    fn remove(path: String, was: &Yaml) -> Op {
        Op { op: "remove", path, from: None, was: (!was.is_null()).then(|| was.clone()), value: None }
    }

    fn replace(path: String, was: &Yaml, value: &Yaml) -> Op {
        Op { op: "replace", path, from: None, was: (!was.is_null()).then(|| was.clone()), value: Some(value.clone()) }
    }

    fn moved(from: String, path: String) -> Op {
        Op { op: "move", path, from: Some(from), was: None, value: None }
    }

    /// The hash json-diff builds, in its key order.
    fn into_yaml(self) -> Yaml {
        let mut hash = Mapping::new();
        hash.insert("op".into(), self.op.into());
        if let Some(from) = self.from {
            hash.insert("from".into(), from.into());
        }
        hash.insert("path".into(), self.path.into());
        if let Some(was) = self.was {
            hash.insert("was".into(), was);
        }
        if let Some(value) = self.value {
            hash.insert("value".into(), value);
        }
        hash.into()
    }
}

/// JsonDiff.extend_json_pointer (RFC 6901 escaping).
fn pointer(path: &str, key: &Yaml) -> String {
    let key = match key {
        Yaml::String(s) => s.replace('~', "~0").replace('/', "~1"),
        other => ruby_to_s(other),
    };
    format!("{path}/{key}")
}

fn index_pointer(path: &str, index: usize) -> String {
    format!("{path}/{index}")
}

/// `JsonDiff.diff(before, after, include_was: true, similarity: create_similarity)`.
fn json_diff(before: &Yaml, after: &Yaml, path: &str) -> Vec<Op> {
    let mut changes = Vec::new();
    match (before, after) {
        (Yaml::Mapping(b), Yaml::Mapping(a)) => {
            for (key, value) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                changes.push(Op::remove(pointer(path, key), value));
            }
            for (key, value) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
                changes.push(Op::add(pointer(path, key), value));
            }
            for (key, value) in b.iter() {
                if let Some(other) = a.get(key) {
                    changes.extend(json_diff(value, other, &pointer(path, key)));
                }
            }
        }
        (Yaml::Sequence(b), Yaml::Sequence(a)) => changes.extend(array_diff(b, a, path)),
        (Yaml::Mapping(_) | Yaml::Sequence(_), _) => changes.push(Op::replace(path.to_string(), before, after)),
        _ => {
            if !ruby_eq(before, after) {
                changes.push(Op::replace(path.to_string(), before, after));
            }
        }
    }
    changes
}

/// The array branch of `JsonDiff.diff`.
fn array_diff(before: &[Yaml], after: &[Yaml], path: &str) -> Vec<Op> {
    if before.is_empty() {
        return after.iter().enumerate().map(|(i, item)| Op::add(index_pointer(path, i), item)).collect();
    }
    if after.is_empty() {
        return before.iter().map(|item| Op::remove(index_pointer(path, 0), item)).collect();
    }
    let mut pairing = array_pairing(before, after);
    // Pairs below the similarity limit are removed and re-added.
    let (kept, dropped): (Vec<_>, Vec<_>) = pairing.pairs.into_iter().partition(|p| p.2 >= 0.5);
    for (b, a, _) in dropped {
        pairing.removed.push(b);
        pairing.added.push(a);
    }
    let mut changes = Vec::new();
    for &(b, a, _) in &kept {
        changes.extend(json_diff(&before[b], &after[a], &index_pointer(path, b)));
    }
    let pairs: Vec<(usize, usize)> = kept.iter().map(|&(b, a, _)| (b, a)).collect();
    let (removed, moves, added) = array_changes(pairing.removed, &pairs, pairing.added);
    for b in removed {
        changes.push(Op::remove(index_pointer(path, b), &before[b]));
    }
    for (from, to) in moves {
        if from != to {
            changes.push(Op::moved(index_pointer(path, from), index_pointer(path, to)));
        }
    }
    for a in added {
        changes.push(Op::add(index_pointer(path, a), &after[a]));
    }
    changes
}

/// `array_pairing`'s answer: before/after index pairs with their similarity, unpaired before and after indices.
struct Pairing {
    pairs: Vec<(usize, usize, f64)>,
    removed: Vec<usize>,
    added: Vec<usize>,
}

/// `JsonDiff.array_pairing`: each before item's candidates sorted by similarity, the rows by their best candidate,
/// then pairs taken greedily. Ruby's `sort!` is not stable; ties keep their index order here.
fn array_pairing(before: &[Yaml], after: &[Yaml]) -> Pairing {
    let similarities: Vec<Vec<f64>> = before.iter().map(|b| after.iter().map(|a| similarity(b, a)).collect()).collect();
    let by_similarity = |x: &(usize, usize), y: &(usize, usize)| {
        similarities[y.0][y.1].partial_cmp(&similarities[x.0][x.1]).unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut rows: Vec<Vec<(usize, usize)>> = (0..before.len())
        .map(|b| {
            let mut row: Vec<(usize, usize)> = (0..after.len()).map(|a| (b, a)).collect();
            row.sort_by(by_similarity);
            row
        })
        .collect();
    rows.sort_by(|x, y| by_similarity(&x[0], &y[0]));
    let mut before_paired = vec![false; before.len()];
    let mut after_paired = vec![false; after.len()];
    let mut pairs = Vec::new();
    for _ in 0..before.len().min(after.len()) {
        let row = rows.iter().find(|row| !before_paired[row[0].0]).expect("an unpaired before item");
        let &(b, a) = row.iter().find(|c| !after_paired[c.1]).expect("an unpaired after item");
        before_paired[b] = true;
        after_paired[a] = true;
        pairs.push((b, a, similarities[b][a]));
    }
    let unpaired = |paired: &[bool]| (0..paired.len()).filter(|&i| !paired[i]).collect();
    let (removed, added) = if before.len() < after.len() {
        (Vec::new(), unpaired(&after_paired))
    } else {
        (unpaired(&before_paired), Vec::new())
    };
    Pairing { pairs, removed, added }
}

/// json-diff's `IndexMaps`: index shifts applied in the order they were recorded.
#[derive(Default)]
struct IndexMaps(Vec<(bool, usize)>);

impl IndexMaps {
    fn addition(&mut self, pivot: usize) {
        self.0.push((true, pivot));
    }

    fn removal(&mut self, pivot: usize) {
        self.0.push((false, pivot));
    }

    fn map(&self, index: usize) -> usize {
        self.0.iter().fold(index, |i, &(addition, pivot)| match (addition, i >= pivot) {
            (true, true) => i + 1,
            (false, true) => i - 1,
            _ => i,
        })
    }
}

/// `JsonDiff.array_changes`: removals from the highest index, additions from the lowest, and the pairs as the moves
/// of their rings.
fn array_changes(
    mut removed: Vec<usize>,
    pairs: &[(usize, usize)],
    mut added: Vec<usize>,
) -> (Vec<usize>, Vec<(usize, usize)>, Vec<usize>) {
    removed.sort_unstable_by(|a, b| b.cmp(a));
    added.sort_unstable();
    let mut removal_map = IndexMaps::default();
    removed.iter().for_each(|&r| removal_map.removal(r));
    let mut addition_map = IndexMaps::default();
    added.iter().rev().for_each(|&a| addition_map.removal(a));
    // An insertion-ordered hash of mapped before index → mapped after index.
    let mut moves: Vec<(usize, usize)> = Vec::new();
    for &(b, a) in pairs {
        let (mb, ma) = (removal_map.map(b), addition_map.map(a));
        match moves.iter_mut().find(|(k, _)| *k == mb) {
            Some(entry) => entry.1 = ma,
            None => moves.push((mb, ma)),
        }
    }
    let mut rings = Vec::new();
    while !moves.is_empty() {
        let (mut origin, mut target) = moves.remove(0);
        let first = origin;
        let mut ring = Vec::new();
        while target != first {
            ring.push(origin);
            origin = target;
            let Some(at) = moves.iter().position(|(k, _)| *k == origin) else { break };
            target = moves.remove(at).1;
        }
        ring.push(origin);
        rings.push(ring);
    }
    let mut ring_moves = Vec::new();
    for ring in rings {
        let mut ring_map = IndexMaps::default();
        for i in 0..ring.len() {
            let next = ring[(i + 1) % ring.len()];
            if ring[i] != next {
                ring_moves.push((ring_map.map(ring[i]), next));
            }
            ring_map.removal(ring[i]);
            ring_map.addition(next);
        }
    }
    (removed, ring_moves, added)
}

/// The Ruby class of a YAML value, which `JsonDiff.similarity` compares first.
fn ruby_class(value: &Yaml) -> u8 {
    match value {
        Yaml::Null => 0,
        Yaml::Bool(true) => 1,
        Yaml::Bool(false) => 2,
        Yaml::Number(n) if n.is_f64() => 3,
        Yaml::Number(_) => 4,
        Yaml::String(_) => 5,
        Yaml::Sequence(_) => 6,
        Yaml::Mapping(_) => 7,
        Yaml::Tagged(_) => 8,
    }
}

/// `JsonDiff.similarity` with `SpaceDiffManifest#create_similarity`: hashes with a `type` (else a `name`) on both
/// sides are the same item exactly when it is equal.
fn similarity(before: &Yaml, after: &Yaml) -> f64 {
    if ruby_class(before) != ruby_class(after) {
        return 0.0;
    }
    match (before, after) {
        (Yaml::Mapping(b), Yaml::Mapping(a)) => {
            for id in ["type", "name"] {
                if let (Some(x), Some(y)) = (b.get(id), a.get(id)) {
                    return if ruby_eq(x, y) { 1.0 } else { 0.0 };
                }
            }
            if b.is_empty() {
                return if a.is_empty() { 1.0 } else { 0.0 };
            }
            let mut total: f64 = b.iter().map(|(k, v)| similarity(v, a.get(k).unwrap_or(&Yaml::Null))).sum();
            // `(before_keys & after_keys).size / (before_keys | after_keys).size` is an integer division.
            let common = b.keys().filter(|k| a.contains_key(*k)).count();
            let union = b.len() + a.len() - common;
            total += (common / union) as f64;
            total / (b.len() + 1) as f64
        }
        (Yaml::Sequence(b), Yaml::Sequence(a)) => {
            if b.is_empty() {
                return 1.0;
            }
            let best = |item: &Yaml| {
                a.iter()
                    .map(|other| similarity(item, other))
                    .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))
            };
            b.iter().map(|item| best(item).unwrap_or(0.0)).sum::<f64>() / b.len() as f64
        }
        _ => {
            if ruby_eq(before, after) {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// Ruby's `==`: numbers by value (`1 == 1.0`), hashes whatever their order.
fn ruby_eq(a: &Yaml, b: &Yaml) -> bool {
    match (a, b) {
        (Yaml::Number(x), Yaml::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), ..) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Yaml::Sequence(x), Yaml::Sequence(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| ruby_eq(x, y)),
        (Yaml::Mapping(x), Yaml::Mapping(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| ruby_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Yaml {
        serde_norway::from_str(text).unwrap()
    }

    fn ops(before: &str, after: &str) -> Vec<Yaml> {
        json_diff(&yaml(before), &yaml(after), "").into_iter().map(Op::into_yaml).collect()
    }

    /// json-diff 0.4.1's spec/json-diff/diff_spec.rb, with `include_was`.
    #[test]
    fn json_diff_pairs_arrays_and_moves_rings_as_the_gem() {
        let cases = [
            (
                "[]",
                "[1, 2, 3]",
                "[{op: add, path: /0, value: 1}, {op: add, path: /1, value: 2}, {op: add, path: /2, value: 3}]",
            ),
            (
                "[1, 2, 3]",
                "[]",
                "[{op: remove, path: /0, was: 1}, {op: remove, path: /0, was: 2}, {op: remove, path: /0, was: 3}]",
            ),
            (
                "[0]",
                "[1, 2, 3]",
                "[{op: remove, path: /0, was: 0}, {op: add, path: /0, value: 1}, {op: add, path: /1, value: 2}, {op: add, path: /2, value: 3}]",
            ),
            (
                "[1, 2, 3]",
                "[0]",
                "[{op: remove, path: /2, was: 3}, {op: remove, path: /1, was: 2}, {op: remove, path: /0, was: 1}, {op: add, path: /0, value: 0}]",
            ),
            (
                "[1, 2, 3, 4, 5]",
                "[6, 4, 3, 2]",
                "[{op: remove, path: /4, was: 5}, {op: remove, path: /0, was: 1}, {op: move, from: /0, path: /2}, {op: move, from: /1, path: /0}, {op: add, path: /0, value: 6}]",
            ),
            ("[1, 2, 3]", "[2, 3, 1]", "[{op: move, from: /0, path: /2}]"),
            (
                "[1, 2, 3, 4]",
                "[5, 3, 4, 2]",
                "[{op: remove, path: /0, was: 1}, {op: move, from: /0, path: /2}, {op: add, path: /0, value: 5}]",
            ),
            (
                "[laundry, 12, {pillar: 0}, true]",
                "[true, {pillar: 1}, 3, 12]",
                "[{op: replace, path: /2/pillar, was: 0, value: 1}, {op: remove, path: /0, was: laundry}, {op: move, from: /0, path: /2}, {op: move, from: /1, path: /0}, {op: add, path: /2, value: 3}]",
            ),
            (
                "{string: laundry, number: 12, object: {pillar: 0}, list: [2, 4, 1], bool: false, 'null': null}",
                "{string: laundry, number: 12, object: {pillar: 1}, list: [1, 2, 3], bool: true, 'null': null}",
                "[{op: replace, path: /object/pillar, was: 0, value: 1}, {op: remove, path: /list/1, was: 4}, {op: move, from: /list/0, path: /list/1}, {op: add, path: /list/2, value: 3}, {op: replace, path: /bool, was: false, value: true}]",
            ),
            ("0", "'0'", "[{op: replace, path: '', was: 0, value: '0'}]"),
            (
                "{a: 1, b: 2}",
                "{b: 3, c: 4}",
                "[{op: remove, path: /a, was: 1}, {op: add, path: /c, value: 4}, {op: replace, path: /b, was: 2, value: 3}]",
            ),
            ("{'a/b': 1}", "{'a/b': 2}", "[{op: replace, path: /a~1b, was: 1, value: 2}]"),
            ("1", "1.0", "[]"),
        ];
        for (before, after, expected) in cases {
            assert_eq!(Yaml::Sequence(ops(before, after)), yaml(expected), "{before} → {after}");
        }
    }

    /// Psych refuses aliases, not anchors; a `*` inside a scalar, a quoted string, a comment or a block scalar is
    /// no alias.
    #[test]
    fn aliases_are_found_where_a_node_begins() {
        for aliased in
            ["a: &m 1\nb: *m\n", "list:\n- &x 1\n- *x\n", "flow: [*a, 1]\n", "*k : v\n", "m: {a: 1, b: *c}\n"]
        {
            assert!(has_alias(aliased), "{aliased}");
        }
        let plain = [
            "a: &m 1\n",
            "command: ls *.txt\n",
            "command: 'echo *x'\n",
            "command: \"echo \\\" *x\"\n",
            "a: 1 # see *x\n",
            "script: |\n  *x\n  - *y\nnext: 1\n",
            "folded: >-\n  *x\n",
            "a: b*c\n",
        ];
        for text in plain {
            assert!(!has_alias(text), "{text}");
        }
        assert!(has_alias("script: |\n  *x\nnext: *y\n"), "the block scalar ends with its indentation");
    }

    /// `JsonDiff.similarity`: hash key sets compared with an integer division, so unequal key sets weigh 0.
    #[test]
    fn similarity_is_the_gems_with_ccs_identifiers() {
        assert_eq!(similarity(&yaml("{type: web, a: 1}"), &yaml("{type: web, b: 2}")), 1.0);
        assert_eq!(similarity(&yaml("{name: x}"), &yaml("{name: y, a: 1}")), 0.0);
        assert_eq!(similarity(&yaml("{route: a, protocol: http1}"), &yaml("{route: b, protocol: http1}")), 2.0 / 3.0);
        assert_eq!(similarity(&yaml("{route: a, protocol: http1}"), &yaml("{route: a}")), 1.0 / 3.0);
        assert_eq!(similarity(&yaml("true"), &yaml("false")), 0.0);
        assert_eq!(similarity(&yaml("1"), &yaml("1.0")), 0.0, "Integer and Float are different classes");
    }

    /// space_diff_manifest.rb#normalize_units with ByteQuantity.
    #[test]
    fn units_normalize_as_space_diff_manifest() {
        let normalized = normalize_units(
            yaml("{memory: 1G, disk_quota: 512MB, disk-quota: 1.5G, log-rate-limit-per-second: 1024K}")
                .as_mapping()
                .cloned()
                .unwrap(),
        );
        assert_eq!(
            Yaml::Mapping(normalized),
            yaml("{memory: 1024M, disk_quota: 512M, disk-quota: 1536M, log-rate-limit-per-second: 1M}")
        );
        let rates = |value: &str| {
            let hash = yaml(&format!("{{log-rate-limit-per-second: {value}}}")).as_mapping().cloned().unwrap();
            normalize_units(hash)["log-rate-limit-per-second"].clone()
        };
        assert_eq!(rates("-1"), yaml("'-1'"), "the integer -1 becomes the string '-1'");
        assert_eq!(rates("0"), yaml("'0'"));
        assert_eq!(rates("16k"), yaml("16K"));
        assert_eq!(rates("-1B"), yaml("-1B"), "only the text -1 is kept; -1 bytes read from -1B is written -1B");
        assert_eq!(rates("0K"), yaml("0T"));
        let memory = |value: &str| {
            normalize_units(yaml(&format!("{{memory: {value}}}")).as_mapping().cloned().unwrap())["memory"].clone()
        };
        let units = "memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB";
        assert_eq!(memory("256"), Yaml::from(units));
        assert_eq!(memory("lots"), yaml("memory is not a number"));
        assert_eq!(memory("512K"), yaml("0M"));
    }
}
