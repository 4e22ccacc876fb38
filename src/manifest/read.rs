//! Reading a manifest: YAML parsed, vars resolved (a user's manifest only) and the deploy's app selected.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use super::AppManifest;
use super::vars::{Vars, interpolate};

impl AppManifest {
    /// Reads the manifest at `path` (given as `param`), resolves vars and selects `app_name`.
    pub(crate) fn load(path: &Path, param: &str, vars: &Vars, app_name: &str) -> Result<AppManifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("params.manifest: cannot read {param} ({})", path.display()))?;
        AppManifest::parse(&format!("manifest {param}"), &text, vars, app_name)
    }

    /// A manifest with nothing in it but the app's name (a first deploy without a manifest).
    pub(crate) fn minimal(app_name: &str) -> AppManifest {
        let mut app = Map::new();
        app.insert("name".into(), Value::String(app_name.into()));
        AppManifest { origin: "the default manifest".into(), app }
    }

    /// Parses manifest YAML, resolves vars and selects the application called `app_name` (or the only one).
    pub(crate) fn parse(origin: &str, text: &str, vars: &Vars, app_name: &str) -> Result<AppManifest> {
        let mut doc: Value = serde_norway::from_str(text).with_context(|| format!("{origin} is not valid YAML"))?;
        let mut missing = BTreeSet::new();
        interpolate(&mut doc, vars, &mut missing);
        if !missing.is_empty() {
            let names: Vec<_> = missing.into_iter().collect();
            bail!(
                "{origin} uses vars that have no value: {} (give them in params.vars or params.vars_files)",
                names.join(", ")
            );
        }
        let manifest = AppManifest::select(origin, doc, app_name)?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Parses a manifest whose values are final — one Cloud Foundry generated for an app
    /// (`GET /v3/apps/:guid/manifest`), or the candidate's own — so nothing is interpolated (an env value may
    /// well contain `((`).
    pub(crate) fn literal(origin: &str, text: &str, app_name: &str) -> Result<AppManifest> {
        let doc: Value = serde_norway::from_str(text).with_context(|| format!("{origin} is not valid YAML"))?;
        AppManifest::select(origin, doc, app_name)
    }

    fn select(origin: &str, mut doc: Value, app_name: &str) -> Result<AppManifest> {
        let Some(Value::Array(apps)) = doc.get_mut("applications").map(Value::take) else {
            bail!("{origin} has no 'applications' list");
        };
        let mut apps: Vec<Map<String, Value>> = apps
            .into_iter()
            .enumerate()
            .map(|(i, app)| match app {
                Value::Object(map) if map.get("name").is_some_and(Value::is_string) => Ok(map),
                _ => Err(anyhow!("{origin}: applications[{i}] must be a map with a 'name'")),
            })
            .collect::<Result<_>>()?;
        let app = match apps.len() {
            0 => bail!("{origin} has an empty 'applications' list"),
            1 => apps.remove(0),
            _ => {
                let names: Vec<String> =
                    apps.iter().map(|a| a["name"].as_str().unwrap_or_default().to_owned()).collect();
                let index = names.iter().position(|n| n.eq_ignore_ascii_case(app_name)).ok_or_else(|| {
                    anyhow!(
                        "{origin} has several applications ({}) and none is source.app '{app_name}'",
                        names.join(", ")
                    )
                })?;
                apps.swap_remove(index)
            }
        };
        Ok(AppManifest { origin: origin.to_owned(), app })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::testing::parse;

    #[test]
    fn selects_source_app_among_several() {
        let text = "applications:\n- name: worker\n- name: myapp\n  instances: 2\n";
        assert_eq!(parse(text).unwrap().app["instances"], json!(2));
        let err = AppManifest::parse("manifest m.yml", text, &Vars::default(), "other").unwrap_err();
        assert!(
            err.to_string().contains("several applications (worker, myapp) and none is source.app 'other'"),
            "{err}"
        );
    }

    #[test]
    fn final_manifests_are_taken_literally() {
        let text = "applications:\n- name: myapp\n  env:\n    TEMPLATE: \"((not-a-var))\"\n";
        let manifest = AppManifest::literal("the manifest of myapp", text, "myapp").unwrap();
        assert_eq!(manifest.env()["TEMPLATE"], "((not-a-var))");
        assert!(parse(text).is_err(), "a user's manifest resolves vars");
    }
}
