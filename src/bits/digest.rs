//! The content digest of app bits: one SHA-1 over every gathered entry's kind, path, mode, file digest and link
//! target, in path order. It tells whether the bits of a deploy are the ones production runs (`skip_unchanged`)
//! without a second walk: it is made from the list [`gather`](super::gather) produced for the zip, reading only
//! the symlinks' targets again (the list keeps none).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use sha1::{Digest, Sha1};

use super::archive;
use super::hash::{READ_BUF, sha1_stream, to_hex};
use super::resource::{Kind, Resource};
use super::source::AppBits;

/// The digest of `resources` as gathered from `bits`: `sha1:<hex>`.
pub(crate) fn content_digest(bits: &AppBits, resources: &[Resource]) -> Result<String> {
    let targets = link_targets(bits, resources)?;
    Ok(digest_of(resources, &targets))
}

/// The digest of one file's content (a droplet tarball): `sha1:<hex>`.
pub(crate) fn file_digest(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (sha1, _) =
        sha1_stream(file, &mut vec![0; READ_BUF]).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("sha1:{sha1}"))
}

/// The target of every symlink among `resources`, by path.
fn link_targets(bits: &AppBits, resources: &[Resource]) -> Result<BTreeMap<String, Vec<u8>>> {
    let links: Vec<&str> = resources.iter().filter(|r| r.kind == Kind::Symlink).map(|r| r.path.as_str()).collect();
    if links.is_empty() {
        return Ok(BTreeMap::new());
    }
    if !bits.is_archive() {
        use std::os::unix::ffi::OsStrExt;
        return links
            .into_iter()
            .map(|path| {
                let full = bits.path().join(path);
                let target =
                    std::fs::read_link(&full).with_context(|| format!("cannot read link {}", full.display()))?;
                Ok((path.to_owned(), target.as_os_str().as_bytes().to_vec()))
            })
            .collect();
    }
    let mut zip = archive::open(bits.path())?;
    let entries = archive::entries(&mut zip)?;
    let mut targets = BTreeMap::new();
    for entry in entries.into_iter().filter(|e| e.kind == Kind::Symlink && links.contains(&e.path.as_str())) {
        let mut file =
            zip.by_index(entry.index).with_context(|| format!("cannot read '{}' in the archive", entry.path))?;
        let mut target = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut target)
            .with_context(|| format!("cannot read '{}' in the archive", entry.path))?;
        targets.insert(entry.path, target);
    }
    Ok(targets)
}

/// The digest of `resources` (in any order) with the symlinks' `targets`.
fn digest_of(resources: &[Resource], targets: &BTreeMap<String, Vec<u8>>) -> String {
    let mut sorted: Vec<&Resource> = resources.iter().collect();
    sorted.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha1::new();
    for resource in sorted {
        let kind = match resource.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "link",
        };
        let target = targets.get(&resource.path).map(|t| to_hex(t)).unwrap_or_default();
        // No field holds a NUL or a newline but the path, and a path cannot hold a NUL.
        hasher.update(format!("{kind}\0{}\0{:o}\0{}\0{target}\n", resource.path, resource.mode, resource.sha1));
    }
    format!("sha1:{}", to_hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha1: &str, mode: u32) -> Resource {
        Resource { path: path.into(), sha1: sha1.into(), size: 1, mode, kind: Kind::File }
    }

    fn link(path: &str) -> Resource {
        Resource { path: path.into(), sha1: String::new(), size: 0, mode: 0o777, kind: Kind::Symlink }
    }

    fn targets(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(p, t)| ((*p).to_owned(), t.as_bytes().to_vec())).collect()
    }

    #[test]
    fn the_walk_order_does_not_change_the_digest() {
        let a = [file("a", "11", 0o644), file("b/c", "22", 0o755), link("l")];
        let b = [link("l"), file("b/c", "22", 0o755), file("a", "11", 0o644)];
        let t = targets(&[("l", "a")]);
        assert_eq!(digest_of(&a, &t), digest_of(&b, &t));
        assert!(digest_of(&a, &t).starts_with("sha1:"));
    }

    #[test]
    fn a_mode_a_link_target_a_path_a_content_or_a_kind_changes_the_digest() {
        let base = [file("a", "11", 0o644), link("l")];
        let t = targets(&[("l", "a")]);
        let digest = digest_of(&base, &t);
        let changed = [
            digest_of(&[file("a", "11", 0o755), link("l")], &t),
            digest_of(&base, &targets(&[("l", "b")])),
            digest_of(&[file("moved/a", "11", 0o644), link("l")], &t),
            digest_of(&[file("a", "12", 0o644), link("l")], &t),
            digest_of(&[file("a", "11", 0o644), file("l", "", 0o777)], &t),
            digest_of(&[file("a", "11", 0o644)], &BTreeMap::new()),
        ];
        for (i, other) in changed.iter().enumerate() {
            assert_ne!(other, &digest, "change #{i} went unseen");
        }
    }

    #[test]
    fn reads_link_targets_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("l")).unwrap();
        let bits = AppBits::resolve(dir.path(), ".").unwrap();
        let gathered = super::super::gather(&bits).unwrap();
        let before = content_digest(&bits, &gathered).unwrap();
        std::fs::remove_file(dir.path().join("l")).unwrap();
        std::os::unix::fs::symlink("elsewhere", dir.path().join("l")).unwrap();
        let regathered = super::super::gather(&bits).unwrap();
        assert_eq!(regathered, gathered, "the gathered list alone does not see a link's target");
        assert_ne!(content_digest(&bits, &regathered).unwrap(), before);
    }
}
