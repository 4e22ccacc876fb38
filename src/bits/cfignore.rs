//! The ignore rules of `cf push`: CF's default ignores, the app's top-level `.cfignore`, and the CLI's trace file.
//!
//! `.cfignore` uses gitignore syntax (negation `!`, directory-only `foo/`, anchored `/foo`, `**`); matching is done
//! by the `ignore` crate's gitignore module. Like the CLI, only the `.cfignore` at the root of the app counts: a
//! nested one is not read (and, like every `.cfignore`, is not uploaded). The same holds inside an archive, where
//! the CLI takes the first entry whose name merely ends in `.cfignore`, wherever it sits; its patterns are meant
//! for the root, so the root one is the one read here. The CLI matches with go-gitignore, where
//! the last matching line wins for the path itself, so a later `!negation` can bring back a file inside an ignored
//! directory (`logs/` then `!logs/keep.txt` pushes `logs/keep.txt`); the same holds here. A path is otherwise ignored
//! when it or one of its parent directories is.
//!
//! The default ignores always win: a `.cfignore` cannot bring back `.git` or `manifest.yml`.

use anyhow::{Context, Result};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Left out of every push, at any depth (the CLI's `DefaultIgnoreLines`).
const DEFAULT_IGNORES: &[&str] =
    &[".cfignore", ".DS_Store", ".git", ".gitignore", ".hg", ".svn", "_darcs", "manifest.yaml", "manifest.yml"];

/// The compiled ignore rules for one app.
pub(crate) struct IgnoreRules {
    defaults: Gitignore,
    user: Gitignore,
}

impl IgnoreRules {
    /// `cfignore` is the content of the app's root `.cfignore`, if it has one. `trace_file` is the path, relative to
    /// the app root, of a trace file the CLI would be writing there (`CF_TRACE=/path/in/app`), ignored like the CLI
    /// does.
    pub(crate) fn new(cfignore: Option<&str>, trace_file: Option<&str>) -> Result<IgnoreRules> {
        let mut defaults = GitignoreBuilder::new(".");
        for line in DEFAULT_IGNORES {
            defaults.add_line(None, line).expect("default ignore lines are valid");
        }
        if let Some(trace) = trace_file {
            let escaped: String = trace
                .chars()
                .flat_map(|c| {
                    let escape = matches!(c, '*' | '?' | '[' | ']' | '\\' | '!' | '#');
                    escape.then_some('\\').into_iter().chain(std::iter::once(c))
                })
                .collect();
            defaults
                .add_line(None, &format!("/{escaped}"))
                .with_context(|| format!("cannot ignore the trace file '{trace}'"))?;
        }
        let defaults = defaults.build().context("default ignores")?;

        let mut user = GitignoreBuilder::new(".");
        for (n, line) in cfignore.unwrap_or_default().lines().enumerate() {
            user.add_line(None, line)
                .with_context(|| format!(".cfignore line {}: '{line}' is not a valid pattern", n + 1))?;
        }
        let user = user.build().context(".cfignore")?;
        Ok(IgnoreRules { defaults, user })
    }

    /// Whether `rel` (relative to the app root, `/`-separated, no trailing slash) is left out of the push.
    pub(crate) fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        self.defaults.matched_path_or_any_parents(rel, is_dir).is_ignore()
            || self.user.matched_path_or_any_parents(rel, is_dir).is_ignore()
    }

    /// Whether a walk has to look inside the ignored directory `rel` because a `!negation` might bring back
    /// something in it. Never inside a default-ignored directory such as `.git`.
    pub(crate) fn may_include_inside(&self, rel: &str) -> bool {
        self.user.num_whitelists() > 0 && !self.defaults.matched_path_or_any_parents(rel, true).is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(cfignore: &str) -> IgnoreRules {
        IgnoreRules::new(Some(cfignore), None).unwrap()
    }

    #[test]
    fn default_ignores_apply_at_any_depth_and_to_everything_below() {
        let r = IgnoreRules::new(None, None).unwrap();
        for path in [".git", "sub/.git", ".git/config", "a/b/.svn/entries", "manifest.yml", "x/.DS_Store", ".cfignore"]
        {
            assert!(r.is_ignored(path, path.ends_with(".git")), "{path} should be ignored");
        }
        for path in ["app.js", "git", "manifest.yml.bak", "src/gitignore.rs"] {
            assert!(!r.is_ignored(path, false), "{path} should be kept");
        }
    }

    /// Asserts each `(path, is a directory, ignored)` decision.
    fn assert_decisions(r: &IgnoreRules, decisions: &[(&str, bool, bool)]) {
        for &(path, is_dir, ignored) in decisions {
            assert_eq!(r.is_ignored(path, is_dir), ignored, "{path} (directory: {is_dir}) ignored");
        }
    }

    #[test]
    fn negation_dir_only_anchored_and_double_star() {
        let r = rules("*.log\n!keep.log\nbuild/\n/secret.txt\n**/cache/**\ndocs/**/*.pdf\n");
        assert_decisions(
            &r,
            &[
                ("a.log", false, true),
                ("sub/b.log", false, true),
                ("keep.log", false, false),
                ("sub/keep.log", false, false),
                // Directory-only: a directory called build is ignored with its contents, a file called build is not.
                ("build", true, true),
                ("build/out.bin", false, true),
                ("build", false, false),
                // Anchored to the root.
                ("secret.txt", false, true),
                ("sub/secret.txt", false, false),
                // ** in the middle and at both ends.
                ("x/y/cache/z.bin", false, true),
                ("x/y/cache", true, false),
                ("docs/a/b/manual.pdf", false, true),
                ("docs/manual.pdf", false, true),
                ("docs/manual.txt", false, false),
            ],
        );
    }

    #[test]
    fn a_negation_can_bring_back_a_file_in_an_ignored_directory_like_the_cli() {
        let r = rules("logs/\n!logs/keep.txt\n");
        assert_decisions(&r, &[("logs", true, true), ("logs/other.txt", false, true), ("logs/keep.txt", false, false)]);
        assert!(r.may_include_inside("logs"));
        assert!(!r.may_include_inside(".git"));
        assert!(!rules("logs/\n").may_include_inside("logs"));
    }

    #[test]
    fn cfignore_cannot_bring_back_default_ignores() {
        let r = rules("!.git\n!manifest.yml\n!*.txt\n");
        assert_decisions(&r, &[("manifest.yml", false, true), (".git", true, true), (".git/notes.txt", false, true)]);
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_fine() {
        assert_decisions(&rules("# comment\r\n\r\n*.tmp\r\n"), &[("a.tmp", false, true), ("# comment", false, false)]);
    }

    #[test]
    fn trace_file_is_ignored_only_where_it_is() {
        let r = IgnoreRules::new(None, Some("logs/cf[1].trace")).unwrap();
        assert_decisions(
            &r,
            &[
                ("logs/cf[1].trace", false, true),
                ("logs/cf1.trace", false, false),
                ("other/logs/cf[1].trace", false, false),
            ],
        );
    }
}
