//! Resource matching (`POST /v3/resource_matches`): which files CF already has in its cache, so the upload can
//! leave them out. [`FileResource`] is the shape CF uses both to ask and to answer, and the shape the upload's
//! `resources` field echoes back; the bits packer converts its file list into it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::cf::client::CfClient;
use crate::cf::error::Result;
use crate::cf::types::null_as_default;

/// CF's limit of resources per matching request.
pub(crate) const MAX_BATCH: usize = 5000;

/// A file as CF's resource matching and package upload describe it:
/// `{"checksum":{"value":"<sha1 hex>"},"size_in_bytes":N,"path":"dir/file","mode":"644"}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
pub struct FileResource {
    pub checksum: FileChecksum,
    pub size_in_bytes: u64,
    /// Relative, with `/` separators.
    pub path: String,
    /// Octal permission bits without a leading zero (`"644"`, `"755"`); CF's default is `0744`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `{"value": "<sha1 hex>"}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
pub struct FileChecksum {
    pub value: String,
}

impl FileResource {
    /// A file with its SHA-1 (hex), size and unix mode (only the permission bits are kept).
    pub fn new(path: impl Into<String>, sha1_hex: impl Into<String>, size_in_bytes: u64, mode: u32) -> Self {
        FileResource {
            checksum: FileChecksum { value: sha1_hex.into() },
            size_in_bytes,
            path: path.into(),
            mode: Some(format!("{:o}", mode & 0o7777)),
        }
    }
}

/// `{"resources":[…]}`: the request and the answer of resource matching. Fixture: `resource_matches.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ResourceList {
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<FileResource>,
}

/// Resource matching for one client; see [`CfClient::resource_matches`].
#[derive(Clone)]
pub struct ResourceMatches {
    cf: CfClient,
    batch: usize,
}

impl CfClient {
    pub fn resource_matches(&self) -> ResourceMatches {
        ResourceMatches { cf: self.clone(), batch: MAX_BATCH }
    }
}

impl ResourceMatches {
    /// Sets a smaller batch size (1..=5000).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.clamp(1, MAX_BATCH);
        self
    }

    /// The subset of `resources` CF already has, in the given order. Only files with a size above 0 are asked
    /// about (as the CLI does), in batches of at most 5000; matching is by checksum, so identical content at
    /// two paths matches twice. Matching is read-only, so requests are retried like a GET.
    pub async fn find_cached(&self, resources: &[FileResource]) -> Result<Vec<FileResource>> {
        let candidates: Vec<&FileResource> = resources.iter().filter(|r| r.size_in_bytes > 0).collect();
        let mut cached: HashSet<(String, u64)> = HashSet::new();
        for chunk in candidates.chunks(self.batch) {
            #[derive(Serialize)]
            struct Body<'a> {
                resources: &'a [&'a FileResource],
            }
            let answer: ResourceList =
                self.cf.post_action("/v3/resource_matches", Some(&Body { resources: chunk })).await?;
            cached.extend(answer.resources.into_iter().map(|r| (r.checksum.value, r.size_in_bytes)));
        }
        Ok(candidates
            .into_iter()
            .filter(|r| cached.contains(&(r.checksum.value.clone(), r.size_in_bytes)))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_resources_serialize_like_the_reference() {
        let r = FileResource::new("path/to/file", "a9993e364706816aba3e25717850c26c9cd0d89d", 1, 0o100644);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"checksum":{"value":"a9993e364706816aba3e25717850c26c9cd0d89d"},"size_in_bytes":1,"path":"path/to/file","mode":"644"}"#
        );
        assert_eq!(FileResource::new("bin/run", "x", 5, 0o755).mode.as_deref(), Some("755"));
    }
}
