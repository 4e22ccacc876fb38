//! Resource matching for gathered bits: which files Cloud Controller already caches, so only the rest is
//! zipped and uploaded.

use std::collections::HashSet;

use super::Resource;
use crate::cf::{CfClient, FileResource, Result};

/// The SHA-1s CC already has (what [`Resource::is_cached`] and [`super::write_zip`] take), and the resources to
/// send as the upload's `resources` field: every gathered file with one of those SHA-1s, whatever its path.
pub async fn match_cached(cf: &CfClient, gathered: &[Resource]) -> Result<(HashSet<String>, Vec<FileResource>)> {
    let candidates: Vec<FileResource> =
        gathered.iter().filter(|r| r.is_match_candidate()).map(FileResource::from).collect();
    let matched = cf.resource_matches().find_cached(&candidates).await?;
    let sha1s: HashSet<String> = matched.into_iter().map(|r| r.checksum.value).collect();
    let resources = gathered.iter().filter(|r| r.is_cached(&sha1s)).map(FileResource::from).collect();
    Ok((sha1s, resources))
}
