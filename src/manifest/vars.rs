//! `((vars))`: the values `params.vars_files` and `params.vars` give, and their interpolation into a manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use super::scalar_text;

/// Values for `((vars))`: the `vars_files` in order, then `vars`, later ones winning, as `cf push` does.
#[derive(Debug, Default, Clone)]
pub(crate) struct Vars(Map<String, Value>);

impl Vars {
    pub(crate) fn load(put_dir: &Path, vars_files: &[String], vars: &BTreeMap<String, Value>) -> Result<Vars> {
        let mut all = Map::new();
        for file in vars_files {
            let path = put_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("params.vars_files: cannot read {file} ({})", path.display()))?;
            let parsed: Value = serde_norway::from_str(&text)
                .with_context(|| format!("params.vars_files: {file} is not valid YAML"))?;
            match parsed {
                Value::Object(map) => all.extend(map),
                Value::Null => {}
                other => bail!(
                    "params.vars_files: {file} must be a map of names to values, not {}",
                    crate::config::json_kind(&other)
                ),
            }
        }
        all.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Vars(all))
    }

    fn lookup(&self, name: &str) -> Option<&Value> {
        let mut parts = name.split('.');
        let mut value = self.0.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }
}

/// Replaces `((name))` in every string: a string that is exactly one var takes the var's value with its type
/// (so `instances: ((count))` stays a number); vars inside longer strings are spliced in as text.
pub(super) fn interpolate(value: &mut Value, vars: &Vars, missing: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            if let Some(name) = whole_var(text) {
                match vars.lookup(name) {
                    Some(found) => *value = found.clone(),
                    None => {
                        missing.insert(name.to_owned());
                    }
                }
                return;
            }
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(start) = rest.find("((") {
                let Some(len) = rest[start + 2..].find("))") else { break };
                let name = rest[start + 2..start + 2 + len].trim();
                out.push_str(&rest[..start]);
                match vars.lookup(name) {
                    Some(found) => out.push_str(&scalar_text(found)),
                    None => {
                        missing.insert(name.to_owned());
                    }
                }
                rest = &rest[start + 2 + len + 2..];
            }
            out.push_str(rest);
            *text = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|item| interpolate(item, vars, missing)),
        Value::Object(map) => map.values_mut().for_each(|item| interpolate(item, vars, missing)),
        _ => {}
    }
}

fn whole_var(text: &str) -> Option<&str> {
    let name = text.trim().strip_prefix("((")?.strip_suffix("))")?.trim();
    (!name.is_empty() && !name.contains("((") && !name.contains("))")).then_some(name)
}

#[cfg(test)]
impl Vars {
    /// Vars from a JSON map.
    pub(super) fn of(pairs: Value) -> Vars {
        Vars(pairs.as_object().expect("a map of vars").clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::manifest::testing::parse;

    #[test]
    fn whole_vars_keep_their_type_and_partial_vars_splice_text() {
        let manifest = parse(
            "applications:\n- name: myapp\n  instances: ((count))\n  routes:\n  - route: myapp.((domain))\n  env:\n    DB_USER: ((db.user))\n",
        )
        .unwrap();
        assert_eq!(manifest.app["instances"], json!(3));
        assert_eq!(manifest.routes().unwrap(), vec!["myapp.example.com"]);
        assert_eq!(manifest.app["env"]["DB_USER"], json!("u1"));
    }

    #[test]
    fn every_missing_var_is_listed() {
        let err =
            parse("applications:\n- name: myapp\n  memory: ((mem))\n  env: {A: \"x-((a))-((b))\"}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest m.yml uses vars that have no value: a, b, mem (give them in params.vars or params.vars_files)"
        );
    }

    #[test]
    fn vars_files_load_in_order_and_vars_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), "x: from-a\ny: from-a\n").unwrap();
        std::fs::write(dir.path().join("b.yml"), "y: from-b\nz: from-b\n").unwrap();
        let params = BTreeMap::from([("z".to_owned(), json!("from-params"))]);
        let vars = Vars::load(dir.path(), &["a.yml".into(), "b.yml".into()], &params).unwrap();
        assert_eq!(vars.lookup("x"), Some(&json!("from-a")));
        assert_eq!(vars.lookup("y"), Some(&json!("from-b")));
        assert_eq!(vars.lookup("z"), Some(&json!("from-params")));
        let err = Vars::load(dir.path(), &["missing.yml".into()], &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().starts_with("params.vars_files: cannot read missing.yml"), "{err}");
    }
}
