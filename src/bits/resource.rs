//! One gathered entry of the app bits, and its wire form for Cloud Controller.
//!
//! [`Resource`] is what [`gather`](super::gather) produces for every file, directory and symlink that survives the
//! ignore rules; it converts into the [`FileResource`] CC expects in `POST /v3/resource_matches` and in the
//! `resources` field of the package upload.

use std::collections::HashSet;

use crate::cf::FileResource;

/// What a [`Resource`] is on disk (or in the source archive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A regular file: it has a SHA-1 and a size, and its bytes go into the package zip unless CC has them cached.
    File,
    /// A directory: mode 0755, size 0, no checksum. Zipped as an entry whose name ends in `/`.
    Dir,
    /// A symbolic link, never followed: zipped as an entry whose content is the link target, like `cf push` does.
    Symlink,
}

/// One entry of the app bits, with a relative `/`-separated path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Path relative to the app root, `/`-separated, without a leading or trailing `/`.
    pub path: String,
    /// Lower-case hex SHA-1 of the contents for files; empty for directories and symlinks.
    pub sha1: String,
    /// Size in bytes for files; 0 for directories and symlinks.
    pub size: u64,
    /// Unix permission bits (`0o755`, `0o644`, …), without the file-type bits.
    pub mode: u32,
    pub kind: Kind,
}

impl Resource {
    /// Whether the CLI would ask CC about this resource in `POST /v3/resource_matches`: files with content. CC
    /// only ever caches files, and an empty file costs nothing to upload.
    pub fn is_match_candidate(&self) -> bool {
        self.kind == Kind::File && self.size > 0
    }

    /// Whether CC already holds this file, given the SHA-1s that resource matching returned.
    ///
    /// This is the single rule [`write_zip`](super::write_zip) uses to leave a file out of the zip, so the caller
    /// must send exactly the resources for which it is true in the upload's `resources` field.
    pub fn is_cached(&self, cached_sha1s: &HashSet<String>) -> bool {
        self.kind == Kind::File && cached_sha1s.contains(&self.sha1)
    }
}

impl From<&Resource> for FileResource {
    /// A gathered entry as CC's resource-match and package-upload endpoints describe it.
    fn from(r: &Resource) -> Self {
        FileResource::new(r.path.clone(), r.sha1.clone(), r.size, r.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha1: &str, size: u64, mode: u32) -> Resource {
        Resource { path: path.into(), sha1: sha1.into(), size, mode, kind: Kind::File }
    }

    #[test]
    fn serializes_exactly_as_cc_expects() {
        let r = file("path/to/file", "a9993e364706816aba3e25717850c26c9cd0d89d", 1, 0o644);
        let json = serde_json::to_string(&FileResource::from(&r)).unwrap();
        assert_eq!(
            json,
            r#"{"checksum":{"value":"a9993e364706816aba3e25717850c26c9cd0d89d"},"size_in_bytes":1,"path":"path/to/file","mode":"644"}"#
        );
        let exe = file("bin/run", "x", 2, 0o755);
        assert_eq!(FileResource::from(&exe).mode.as_deref(), Some("755"));
    }

    #[test]
    fn reads_the_resource_matches_fixture() {
        use serde::Deserialize;
        #[derive(Deserialize)]
        struct Body {
            resources: Vec<FileResource>,
        }
        let text = include_str!("../../tests/fixtures/cf-api/resource_matches.json");
        let body: Body = serde_json::from_str(text).unwrap();
        assert_eq!(body.resources.len(), 1);
        let r = &body.resources[0];
        assert_eq!(r.checksum.value, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!((r.size_in_bytes, r.path.as_str(), r.mode.as_deref()), (1, "path/to/file", Some("644")));
    }

    #[test]
    fn only_non_empty_files_are_match_candidates_and_only_files_are_cached() {
        let cached: HashSet<String> = ["abc".to_string()].into();
        assert!(file("a", "abc", 3, 0o644).is_match_candidate());
        assert!(!file("empty", "da39", 0, 0o644).is_match_candidate());
        assert!(file("a", "abc", 3, 0o644).is_cached(&cached));
        assert!(!file("b", "abd", 3, 0o644).is_cached(&cached));
        let dir = Resource { path: "d".into(), sha1: String::new(), size: 0, mode: 0o755, kind: Kind::Dir };
        assert!(!dir.is_match_candidate());
        assert!(!dir.is_cached(&[String::new()].into()));
    }
}
