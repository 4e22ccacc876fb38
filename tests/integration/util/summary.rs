//! The proof summary: tests append one JSON line per measured fact (`{"kind": "faults", ...}`) to a file that
//! `tests/run.sh` empties before the run and totals after it (`tests/proof-summary.py`). The file is
//! `$PROOF_SUMMARY`, else `target/tmp/proof-summary.jsonl`.

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

pub fn path() -> PathBuf {
    match std::env::var_os("PROOF_SUMMARY") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("proof-summary.jsonl"),
    }
}

/// Appends `{"kind": kind, ...fields}` as one line (one `write`, so concurrent tests never interleave).
pub fn record(kind: &str, fields: Value) {
    let mut line = serde_json::Map::new();
    line.insert("kind".into(), Value::String(kind.to_owned()));
    if let Value::Object(fields) = fields {
        line.extend(fields);
    }
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    let path = path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(e) = written {
        eprintln!("note: cannot append to the proof summary {}: {e}", path.display());
    }
}
