//! Gathering the resources of the app bits like `cf push` does: every entry that survives the ignore rules, with
//! a SHA-1, size and mode for each file.
//!
//! A directory is walked without following symlinks (its own root was already resolved): directories become
//! mode-0755 entries, symlinks entries of their own, and sockets, FIFOs and devices are skipped (the CLI would hang
//! reading a FIFO). An archive is read entry by entry. Files are hashed on all cores, largest first so that one big
//! file does not finish alone at the end, each thread streaming through one fixed buffer.
//!
//! File modes keep their permission bits and gain owner read and write (0600) where they lack it: CC refuses a
//! cached resource whose mode misses 0600 ("AppResourcesFileModeInvalid"), and the app runs as the files' owner
//! anyway.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use anyhow::{Context, Result, anyhow};

use super::archive;
use super::cfignore::IgnoreRules;
use super::error::BitsError;
use super::hash::{READ_BUF, sha1_stream};
use super::resource::{Kind, Resource};
use super::source::AppBits;

/// Lists, hashes and sorts (by path) every resource of `bits` that the ignore rules keep.
///
/// Fails like the CLI does when nothing is left: [`BitsError::EmptyDirectory`] for a directory without a single
/// entry, [`BitsError::EmptyArchive`] for an archive with one entry or fewer.
pub fn gather(bits: &AppBits) -> Result<Vec<Resource>> {
    let mut resources = if bits.is_archive() {
        let resources = gather_archive(bits.path())?;
        if resources.len() <= 1 {
            return Err(
                BitsError::EmptyArchive { param: bits.param().to_string(), path: bits.path().to_path_buf() }.into()
            );
        }
        resources
    } else {
        let trace = trace_file_in(bits.path(), std::env::var_os("CF_TRACE").as_deref());
        let resources = gather_directory(bits.path(), trace.as_deref())?;
        if resources.is_empty() {
            return Err(
                BitsError::EmptyDirectory { param: bits.param().to_string(), path: bits.path().to_path_buf() }.into()
            );
        }
        resources
    };
    resources.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(resources)
}

/// The mode a file is pushed with: its permission bits plus owner read and write.
pub(crate) fn file_mode(st_mode: u32) -> u32 {
    (st_mode & 0o777) | 0o600
}

/// Where the CLI would write its trace, relative to the app root, when `CF_TRACE` names a file inside it.
fn trace_file_in(root: &Path, cf_trace: Option<&std::ffi::OsStr>) -> Option<String> {
    let value = cf_trace?;
    let text = value.to_str()?;
    if text.is_empty() || text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") {
        return None;
    }
    let path = PathBuf::from(value);
    let absolute = if path.is_absolute() { path } else { std::env::current_dir().ok()?.join(path) };
    let absolute = absolute.canonicalize().unwrap_or(absolute);
    absolute.strip_prefix(root).ok()?.to_str().map(str::to_string)
}

fn gather_directory(root: &Path, trace_file: Option<&str>) -> Result<Vec<Resource>> {
    let cfignore_path = root.join(".cfignore");
    let cfignore = match fs::read_to_string(&cfignore_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(anyhow!("cannot read {}: {e}", cfignore_path.display())),
    };
    let rules = IgnoreRules::new(cfignore.as_deref(), trace_file)?;

    let mut resources = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, dir_rel)) = stack.pop() {
        let listing = fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name().into_string().map_err(|name| {
                anyhow!("{}: file name is not UTF-8, which a zip entry and CC need", dir.join(name).display())
            })?;
            let rel = if dir_rel.is_empty() { name } else { format!("{dir_rel}/{name}") };
            let file_type = entry.file_type().with_context(|| format!("cannot stat {}", entry.path().display()))?;
            if file_type.is_dir() {
                let ignored = rules.is_ignored(&rel, true);
                if ignored && !rules.may_include_inside(&rel) {
                    continue;
                }
                if !ignored {
                    resources.push(Resource {
                        path: rel.clone(),
                        sha1: String::new(),
                        size: 0,
                        mode: archive::DIR_MODE,
                        kind: Kind::Dir,
                    });
                }
                stack.push((entry.path(), rel));
            } else if file_type.is_file() || file_type.is_symlink() {
                if rules.is_ignored(&rel, false) {
                    continue;
                }
                // DirEntry::metadata does not follow symlinks.
                let meta = entry.metadata().with_context(|| format!("cannot stat {}", entry.path().display()))?;
                let (kind, mode) = if file_type.is_symlink() {
                    (Kind::Symlink, meta.permissions().mode() & 0o777)
                } else {
                    (Kind::File, file_mode(meta.permissions().mode()))
                };
                resources.push(Resource {
                    path: rel,
                    sha1: String::new(),
                    size: if kind == Kind::File { meta.len() } else { 0 },
                    mode,
                    kind,
                });
            }
        }
    }

    hash_in_parallel(&mut resources, |resource, buf| {
        let path = root.join(&resource.path);
        let file = fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        sha1_stream(file, buf).with_context(|| format!("cannot read {}", path.display()))
    })?;
    Ok(resources)
}

fn gather_archive(path: &Path) -> Result<Vec<Resource>> {
    let mut zip = archive::open(path)?;
    let entries = archive::entries(&mut zip)?;
    let cfignore = archive::root_cfignore(&mut zip, &entries)?;
    let rules = IgnoreRules::new(cfignore.as_deref(), None)?;

    let mut indexes = Vec::new();
    let mut resources = Vec::new();
    for entry in entries {
        if rules.is_ignored(&entry.path, entry.kind == Kind::Dir) {
            continue;
        }
        indexes.push(entry.index);
        resources.push(Resource {
            path: entry.path,
            sha1: String::new(),
            size: entry.size,
            mode: entry.mode,
            kind: entry.kind,
        });
    }
    hash_in_parallel_with(
        &mut resources,
        || zip.clone(),
        |zip, i, resource, buf| {
            let entry =
                zip.by_index(indexes[i]).with_context(|| format!("cannot read '{}' in the archive", resource.path))?;
            sha1_stream(entry, buf).with_context(|| format!("cannot read '{}' in the archive", resource.path))
        },
    )?;
    Ok(resources)
}

/// Sets `sha1` and `size` of every file resource, hashing on all cores.
fn hash_in_parallel(
    resources: &mut [Resource],
    hash: impl Fn(&Resource, &mut [u8]) -> Result<(String, u64)> + Sync,
) -> Result<()> {
    hash_in_parallel_with(resources, || (), |_, _, resource, buf| hash(resource, buf))
}

/// Like [`hash_in_parallel`], with per-thread state made by `init` (an archive handle, say); `hash` also gets the
/// index of the resource.
fn hash_in_parallel_with<S>(
    resources: &mut [Resource],
    init: impl Fn() -> S + Sync,
    hash: impl Fn(&mut S, usize, &Resource, &mut [u8]) -> Result<(String, u64)> + Sync,
) -> Result<()> {
    let mut files: Vec<usize> = (0..resources.len()).filter(|&i| resources[i].kind == Kind::File).collect();
    files.sort_unstable_by_key(|&i| std::cmp::Reverse(resources[i].size));
    let threads = thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let shared: &[Resource] = resources;
    let results: Vec<Result<Vec<(usize, String, u64)>>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = init();
                    let mut buf = vec![0u8; READ_BUF];
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let Some(&index) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        match hash(&mut state, index, &shared[index], &mut buf) {
                            Ok((sha1, size)) => done.push((index, sha1, size)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err(anyhow!("a hashing thread panicked")))).collect()
    });
    for result in results {
        for (index, sha1, size) in result? {
            resources[index].sha1 = sha1;
            resources[index].size = size;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_keep_permissions_and_gain_owner_read_write() {
        assert_eq!(file_mode(0o100755), 0o755);
        assert_eq!(file_mode(0o100644), 0o644);
        assert_eq!(file_mode(0o100444), 0o644);
        assert_eq!(file_mode(0o104711), 0o711);
    }

    #[test]
    fn trace_file_counts_only_inside_the_app() {
        let root = Path::new("/apps/web");
        let some = |s: &str| trace_file_in(root, Some(std::ffi::OsStr::new(s)));
        assert_eq!(some("/apps/web/logs/trace.txt").as_deref(), Some("logs/trace.txt"));
        assert_eq!(some("/tmp/trace.txt"), None);
        assert_eq!(some("true"), None);
        assert_eq!(some(""), None);
        assert_eq!(trace_file_in(root, None), None);
    }

    #[test]
    fn hashes_in_parallel_and_reports_the_first_failure() {
        let mut resources: Vec<Resource> = (0..50)
            .map(|i| Resource {
                path: format!("f{i}"),
                sha1: String::new(),
                size: i,
                mode: 0o644,
                kind: if i % 10 == 0 { Kind::Dir } else { Kind::File },
            })
            .collect();
        hash_in_parallel(&mut resources, |r, buf| Ok(sha1_stream(r.path.as_bytes(), buf)?)).unwrap();
        assert_eq!(resources[1].sha1, super::super::hash::sha1_stream(&b"f1"[..], &mut [0; 4]).unwrap().0);
        assert_eq!(resources[1].size, 2);
        assert_eq!(resources[10].sha1, "", "directories are not hashed");
        let err = hash_in_parallel(&mut resources, |r, _| {
            if r.path == "f7" { Err(anyhow!("boom on f7")) } else { Ok((String::new(), 0)) }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "boom on f7");
    }
}
