//! Resolving `params.path` into the app bits to push: a directory, or a zip archive (.zip, .jar, .war) whose
//! entries are pushed as if they were a directory, found directly or through a glob that must match exactly one
//! entry.
//!
//! Everything is relative to the put directory Concourse hands the `out` script, never the process's current
//! directory. A symlinked directory or archive is resolved to its real location first, as `cf push` does.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use globset::GlobBuilder;

use super::error::BitsError;

/// Where the app bits come from, resolved from `params.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppBits {
    path: PathBuf,
    archive: bool,
    param: String,
}

impl AppBits {
    /// Resolves `path_param` (`params.path`) against `put_dir`.
    ///
    /// The path may name a directory (`.` is the put directory itself) or a zip archive, or be a glob (`*`, `?`, `[…]`, `**`) that matches exactly one
    /// of them; a path that exists literally is taken as it is even if it contains glob characters. Fails with a
    /// one-line [`BitsError`] when nothing or more than one entry matches, when the path does not exist, or when a
    /// file is not a zip archive.
    pub fn resolve(put_dir: &Path, path_param: &str) -> Result<AppBits> {
        let param = path_param.to_string();
        let target = find_input(put_dir, "path", path_param)?;
        let meta = match fs::metadata(&target) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BitsError::NotFound { key: "path", param, put_dir: put_dir.to_path_buf() }.into());
            }
            Err(e) => {
                return Err(anyhow!("params.path '{param}': cannot read {}: {e}", target.display()));
            }
        };
        let real = fs::canonicalize(&target)
            .with_context(|| format!("params.path '{param}': cannot resolve {}", target.display()))?;
        if meta.is_dir() {
            return Ok(AppBits { path: real, archive: false, param });
        }
        if !meta.is_file() {
            return Err(anyhow!(
                "params.path '{param}' is neither a directory nor a zip archive: {}",
                target.display()
            ));
        }
        let file =
            fs::File::open(&real).with_context(|| format!("params.path '{param}': cannot open {}", real.display()))?;
        if let Err(e) = zip::ZipArchive::new(file) {
            return Err(BitsError::NotAnArchive { param, path: real, reason: e.to_string() }.into());
        }
        Ok(AppBits { path: real, archive: true, param })
    }

    /// The resolved (symlink-free) directory or archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the bits come from a zip archive rather than a directory.
    pub fn is_archive(&self) -> bool {
        self.archive
    }

    /// `params.path` as the pipeline wrote it, for messages.
    pub fn param(&self) -> &str {
        &self.param
    }
}

/// Resolves an input param (`params.<key>`: path, manifest, droplet) against `put_dir`: a relative path, or a
/// glob (`*`, `?`, `[…]`, `**`) that matches exactly one entry; a path that exists literally is taken as it is
/// even if it contains glob characters. Whether the result exists is left to the caller (globs only ever
/// return existing entries).
pub(crate) fn find_input(put_dir: &Path, key: &'static str, param: &str) -> Result<PathBuf> {
    let rel = normalize(param);
    if param.trim().is_empty() {
        return Err(anyhow!("params.{key} '{param}' names no file or directory; give a path inside the put directory"));
    }
    if Path::new(&rel).is_absolute() {
        return Err(BitsError::AbsolutePath { key, param: param.to_string() }.into());
    }
    let literal = put_dir.join(&rel);
    if has_glob_meta(&rel) && fs::symlink_metadata(&literal).is_err() {
        Ok(put_dir.join(glob_exactly_one(put_dir, key, &rel, param)?))
    } else {
        Ok(literal)
    }
}

/// Drops `./` segments, doubled and trailing slashes: `./build//app/` → `build/app`.
fn normalize(param: &str) -> String {
    let absolute = param.starts_with('/');
    let parts: Vec<&str> = param.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let joined = parts.join("/");
    if absolute { format!("/{joined}") } else { joined }
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Walks only as much of `put_dir` as the pattern can reach and returns the one relative path that matches.
fn glob_exactly_one(put_dir: &Path, key: &'static str, pattern: &str, param: &str) -> Result<String> {
    let matcher = GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .with_context(|| format!("params.{key} '{param}' is not a valid glob"))?
        .compile_matcher();
    let parts: Vec<&str> = pattern.split('/').collect();
    let first_glob = parts.iter().position(|p| has_glob_meta(p)).unwrap_or(0);
    let base = parts[..first_glob].join("/");
    let max_depth = if pattern.contains("**") { usize::MAX } else { parts.len() - first_glob };

    let mut matches = Vec::new();
    let mut stack = vec![(base, 0usize)];
    while let Some((dir_rel, depth)) = stack.pop() {
        let dir = if dir_rel.is_empty() { put_dir.to_path_buf() } else { put_dir.join(&dir_rel) };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // The literal prefix may not exist; that is simply no match.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => continue,
            Err(e) => {
                return Err(anyhow!("params.{key} '{param}': cannot list {}: {e}", dir.display()));
            }
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("params.{key} '{param}': cannot list {}", dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = if dir_rel.is_empty() { name } else { format!("{dir_rel}/{name}") };
            if matcher.is_match(&rel) {
                matches.push(rel.clone());
            }
            let is_real_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_real_dir && depth + 1 < max_depth {
                stack.push((rel, depth + 1));
            }
        }
    }
    matches.sort();
    match matches.len() {
        0 => Err(BitsError::GlobNoMatch { key, param: param.to_string(), put_dir: put_dir.to_path_buf() }.into()),
        1 => Ok(matches.pop().expect("one match")),
        _ => Err(BitsError::GlobManyMatches { key, param: param.to_string(), matches }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_params_path() {
        assert_eq!(normalize("./build//app/"), "build/app");
        assert_eq!(normalize("app"), "app");
        assert_eq!(normalize("/abs/x"), "/abs/x");
        assert_eq!(normalize("./"), "");
    }

    #[test]
    fn glob_walk_is_bounded_by_the_pattern_depth() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("build/deep")).unwrap();
        fs::write(dir.path().join("build/app.jar"), b"x").unwrap();
        fs::write(dir.path().join("build/deep/other.jar"), b"x").unwrap();
        assert_eq!(glob_exactly_one(dir.path(), "path", "build/*.jar", "p").unwrap(), "build/app.jar");
        assert_eq!(glob_exactly_one(dir.path(), "path", "*/*.jar", "p").unwrap(), "build/app.jar");
        let err = glob_exactly_one(dir.path(), "path", "build/**/*.jar", "p").unwrap_err();
        assert!(err.to_string().contains("matched 2 entries (build/app.jar, build/deep/other.jar)"), "{err}");
        let err = glob_exactly_one(dir.path(), "path", "nope/*.jar", "p").unwrap_err();
        assert!(err.to_string().contains("matched no files"), "{err}");
    }
}
