//! The failures of packaging app bits that a pipeline author can act on, each a single clear line.
//!
//! They travel inside `anyhow::Error`, so callers that want to react to one (say, retry after
//! [`BitsError::FileChanged`]) can `downcast_ref::<BitsError>()`.

use std::fmt;
use std::path::PathBuf;

/// How many matches a glob error lists before it says "and N more".
const LISTED_MATCHES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BitsError {
    /// An input param (`params.<key>`: path, manifest, droplet) is absolute; it must be relative to the put
    /// directory.
    AbsolutePath { key: &'static str, param: String },
    /// An input param names nothing.
    NotFound { key: &'static str, param: String, put_dir: PathBuf },
    /// A glob matched nothing.
    GlobNoMatch { key: &'static str, param: String, put_dir: PathBuf },
    /// A glob matched more than one entry (paths relative to the put directory, sorted).
    GlobManyMatches { key: &'static str, param: String, matches: Vec<String> },
    /// `params.path` is a file that is not a zip archive (.zip, .jar, .war).
    NotAnArchive { param: String, path: PathBuf, reason: String },
    /// Nothing is left to push in the directory after the ignore rules (the CLI's EmptyDirectoryError).
    EmptyDirectory { param: String, path: PathBuf },
    /// The archive holds one entry or fewer after the ignore rules (the CLI's EmptyArchiveError).
    EmptyArchive { param: String, path: PathBuf },
    /// A file's contents changed between hashing and zipping (the CLI's FileChangedError).
    FileChanged { path: String },
}

impl fmt::Display for BitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BitsError::AbsolutePath { key, param } => {
                write!(f, "params.{key} '{param}' is absolute; it must be relative to the put directory")
            }
            BitsError::NotFound { key, param, put_dir } => {
                write!(f, "params.{key} '{param}' does not exist in {}", put_dir.display())
            }
            BitsError::GlobNoMatch { key, param, put_dir } => {
                write!(f, "params.{key} '{param}' matched no files in {}", put_dir.display())
            }
            BitsError::GlobManyMatches { key, param, matches } => {
                let shown = matches.iter().take(LISTED_MATCHES).map(String::as_str).collect::<Vec<_>>().join(", ");
                let more = match matches.len().saturating_sub(LISTED_MATCHES) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                write!(
                    f,
                    "params.{key} '{param}' matched {} entries ({shown}{more}); it must match exactly one",
                    matches.len()
                )
            }
            BitsError::NotAnArchive { param, path, reason } => write!(
                f,
                "params.path '{param}' is a file but not a zip archive (.zip, .jar or .war) at {}: {reason}",
                path.display()
            ),
            BitsError::EmptyDirectory { param, path } => write!(
                f,
                "params.path '{param}': directory {} has nothing to push (it is empty once .cfignore and the default ignores are applied)",
                path.display()
            ),
            BitsError::EmptyArchive { param, path } => write!(
                f,
                "params.path '{param}': archive {} has nothing to push (one entry or fewer once .cfignore and the default ignores are applied)",
                path.display()
            ),
            BitsError::FileChanged { path } => write!(
                f,
                "file '{path}' changed while the package was being built (its SHA-1 no longer matches); make sure nothing writes to the app directory during the put, then retry"
            ),
        }
    }
}

impl std::error::Error for BitsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_messages_name_the_pattern_and_the_matches() {
        let none =
            BitsError::GlobNoMatch { key: "path", param: "build/*.jar".into(), put_dir: "/tmp/build/put".into() };
        assert_eq!(none.to_string(), "params.path 'build/*.jar' matched no files in /tmp/build/put");
        let two = BitsError::GlobManyMatches {
            key: "path",
            param: "build/*.jar".into(),
            matches: vec!["build/a.jar".into(), "build/b.jar".into()],
        };
        assert_eq!(
            two.to_string(),
            "params.path 'build/*.jar' matched 2 entries (build/a.jar, build/b.jar); it must match exactly one"
        );
    }

    #[test]
    fn long_match_lists_are_cut_short() {
        let many = BitsError::GlobManyMatches {
            key: "path",
            param: "*".into(),
            matches: (0..8).map(|i| format!("f{i}")).collect(),
        };
        let text = many.to_string();
        assert!(text.contains("matched 8 entries (f0, f1, f2, f3, f4 and 3 more)"), "{text}");
        assert!(!text.contains('\n'));
    }
}
