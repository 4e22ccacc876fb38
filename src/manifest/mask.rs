//! A manifest safe to print: every value that may be secret hidden.

use serde_json::Value;

/// `yaml` (a manifest) with every value that may be secret — env values, service binding parameters — replaced,
/// so it can be printed.
pub(crate) fn masked(yaml: &str) -> String {
    const HIDDEN: &str = "(hidden)";
    let Ok(mut doc) = serde_norway::from_str::<Value>(yaml) else { return "(the manifest cannot be shown)".into() };
    for app in doc.get_mut("applications").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(Value::Object(env)) = app.get_mut("env") {
            env.values_mut().for_each(|v| *v = Value::String(HIDDEN.into()));
        }
        for service in app.get_mut("services").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(parameters) = service.get_mut("parameters") {
                *parameters = Value::String(HIDDEN.into());
            }
        }
    }
    serde_norway::to_string(&doc).expect("a JSON value always serializes to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::testing::GENERATED;

    #[test]
    fn masked_manifests_show_no_env_values_or_binding_parameters() {
        let shown = masked(GENERATED);
        assert!(!shown.contains("hunter2") && !shown.contains("also-secret"), "{shown}");
        assert!(shown.contains("SECRET_TOKEN"), "{shown}");
        let with_parameters = "applications:\n- name: a\n  services:\n  - name: db\n    binding_name: primary\n    parameters:\n      password: also-secret\n";
        let shown = masked(with_parameters);
        assert!(!shown.contains("also-secret") && shown.contains("binding_name"), "{shown}");
    }
}
