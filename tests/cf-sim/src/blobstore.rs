//! CC's blobstore on local disk: package zips, the SHA-1 keyed resource cache, droplets (a directory with `app/`
//! plus the `.tgz` clients download or upload), and instance directories. Everything streams through files, so
//! uploads of any size use flat memory.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha1::{Digest, Sha1};
use sha2::Sha256;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// A file the client says the cache already has (an entry of the upload's `resources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResource {
    pub sha1: String,
    pub size: u64,
    pub path: String,
    pub mode: u32,
}

/// CC's limits on packages and on what enters the resource cache.
#[derive(Debug, Clone, Copy)]
pub struct PackageLimits {
    pub max_package_size: u64,
    pub min_cached_size: u64,
    pub max_cached_size: u64,
}

pub struct Blobstore {
    root: PathBuf,
}

impl Blobstore {
    pub fn new(root: &Path) -> io::Result<Self> {
        for dir in ["packages", "resource_cache", "droplets", "uploads", "instances"] {
            fs::create_dir_all(root.join(dir))?;
        }
        Ok(Blobstore { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn package_zip(&self, guid: &str) -> PathBuf {
        self.root.join("packages").join(format!("{guid}.zip"))
    }

    pub fn droplet_dir(&self, guid: &str) -> PathBuf {
        self.root.join("droplets").join(guid)
    }

    pub fn droplet_tgz(&self, guid: &str) -> PathBuf {
        self.root.join("droplets").join(format!("{guid}.tgz"))
    }

    pub fn instance_dir(&self, instance_guid: &str) -> PathBuf {
        self.root.join("instances").join(instance_guid)
    }

    /// A new file for an upload in progress; deleted when dropped.
    pub fn upload_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new_in(self.root.join("uploads"))
    }

    fn cache_path(&self, sha1: &str) -> PathBuf {
        self.root.join("resource_cache").join(sha1)
    }

    pub fn is_cached(&self, sha1: &str) -> bool {
        is_sha1(sha1) && self.cache_path(sha1).is_file()
    }

    /// Builds a package zip from the uploaded zip (if any) plus cached resources, feeding the cache with the
    /// uploaded files whose size is within the limits. Returns the package's SHA-256. Like CC it drops directory
    /// entries and symlinks and rejects packages whose files add up to more than the maximum size.
    pub fn build_package(
        &self,
        bits: Option<&Path>,
        cached: &[CachedResource],
        out: &Path,
        limits: PackageLimits,
    ) -> Result<String, String> {
        let partial = out.with_extension("partial");
        let result = self.write_package(bits, cached, &partial, limits);
        match result {
            Ok(()) => {
                fs::rename(&partial, out).map_err(|e| e.to_string())?;
                sha256_file(out).map_err(|e| e.to_string())
            }
            Err(error) => {
                let _ = fs::remove_file(&partial);
                Err(error)
            }
        }
    }

    fn write_package(
        &self,
        bits: Option<&Path>,
        cached: &[CachedResource],
        out: &Path,
        limits: PackageLimits,
    ) -> Result<(), String> {
        let too_large = || format!("Package may not be larger than {} bytes", limits.max_package_size);
        let mut writer = ZipWriter::new(BufWriter::new(File::create(out).map_err(|e| e.to_string())?));
        let mut total: u64 = 0;
        if let Some(bits) = bits {
            let invalid = |e: zip::result::ZipError| format!("The app upload is invalid: {e}");
            let mut archive =
                ZipArchive::new(BufReader::new(File::open(bits).map_err(|e| e.to_string())?)).map_err(invalid)?;
            for index in 0..archive.len() {
                let (name, size, skip) = {
                    let entry = archive.by_index_raw(index).map_err(invalid)?;
                    let symlink = entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000);
                    let name = entry.name().map(|n| n.into_owned()).map_err(invalid)?;
                    if entry.enclosed_name().is_none() {
                        return Err(format!("The app upload is invalid: unsafe path '{name}'"));
                    }
                    (name, entry.size(), entry.is_dir() || symlink)
                };
                if skip {
                    continue;
                }
                total += size;
                if total > limits.max_package_size {
                    return Err(too_large());
                }
                writer.raw_copy_file(archive.by_index_raw(index).map_err(invalid)?).map_err(|e| e.to_string())?;
                if (limits.min_cached_size..=limits.max_cached_size).contains(&size) {
                    let mut entry = archive.by_index(index).map_err(invalid)?;
                    self.cache_entry(&mut entry).map_err(|e| format!("caching {name}: {e}"))?;
                }
            }
        }
        for resource in cached {
            total += resource.size;
            if total > limits.max_package_size {
                return Err(too_large());
            }
            let mut file = File::open(self.cache_path(&resource.sha1)).map_err(|_| {
                format!(
                    "The resource with checksum {} is not in the cache. They have been deleted; please retry package upload.",
                    resource.sha1
                )
            })?;
            let options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .unix_permissions(resource.mode)
                .large_file(resource.size >= u32::MAX as u64);
            writer.start_file(resource.path.as_str(), options).map_err(|e| e.to_string())?;
            io::copy(&mut file, &mut writer).map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?.flush().map_err(|e| e.to_string())?;
        Ok(())
    }

    fn cache_entry(&self, entry: &mut impl Read) -> io::Result<()> {
        let mut temp = tempfile::NamedTempFile::new_in(self.root.join("resource_cache"))?;
        let mut hasher = Sha1::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            temp.write_all(&buffer[..n])?;
        }
        let sha1 = hex(&hasher.finalize());
        temp.persist(self.cache_path(&sha1)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Copies a package zip (`POST /v3/packages?source_guid=`).
    pub fn copy_package(&self, from: &str, to: &str) -> io::Result<()> {
        fs::copy(self.package_zip(from), self.package_zip(to)).map(|_| ())
    }

    /// Copies a droplet's files and tgz (`POST /v3/droplets?source_guid=`), cheaply with hard links.
    pub fn copy_droplet(&self, from: &str, to: &str) -> io::Result<()> {
        link_tree(&self.droplet_dir(from), &self.droplet_dir(to))?;
        if self.droplet_tgz(from).exists() {
            fs::hard_link(self.droplet_tgz(from), self.droplet_tgz(to))
                .or_else(|_| fs::copy(self.droplet_tgz(from), self.droplet_tgz(to)).map(|_| ()))?;
        }
        Ok(())
    }

    /// Removes what a deleted droplet or package left on disk.
    pub fn remove_droplet(&self, guid: &str) {
        let _ = fs::remove_dir_all(self.droplet_dir(guid));
        let _ = fs::remove_file(self.droplet_tgz(guid));
    }

    pub fn remove_package(&self, guid: &str) {
        let _ = fs::remove_file(self.package_zip(guid));
    }
}

fn is_sha1(value: &str) -> bool {
    value.len() == 40 && value.chars().all(|c| c.is_ascii_hexdigit())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// Whether a resource path is relative and stays inside the app directory (CC's fingerprint check).
pub fn safe_relative_path(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Unzips a package into `dir`, keeping unix modes.
pub fn extract_zip(zip: &Path, dir: &Path) -> Result<(), String> {
    let mut archive =
        ZipArchive::new(BufReader::new(File::open(zip).map_err(|e| e.to_string())?)).map_err(|e| e.to_string())?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| e.to_string())?;
        let Some(relative) = entry.enclosed_name() else { continue };
        let target = dir.join(relative);
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut out = File::create(&target).map_err(|e| e.to_string())?;
        io::copy(&mut entry, &mut out).map_err(|e| e.to_string())?;
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode((mode & 0o7777) | 0o600))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Packs a directory as a gzipped tar (a droplet as clients download it).
pub fn tar_gz(dir: &Path, out: &Path) -> io::Result<()> {
    let file = BufWriter::new(File::create(out)?);
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()?.finish()?.flush()
}

/// Unpacks a gzipped tar into `dir` (an uploaded droplet).
pub fn untar_gz(file: &Path, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let decoder = flate2::read::GzDecoder::new(BufReader::new(File::open(file)?));
    tar::Archive::new(decoder).unpack(dir)
}

/// Copies a directory tree with hard links (directories are created, files linked; falls back to copying).
pub fn link_tree(src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = dst.join(entry.file_name());
        if kind.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else if fs::hard_link(entry.path(), &target).is_err() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_with(path: &Path, files: &[(&str, &[u8], u32)]) {
        let mut writer = ZipWriter::new(File::create(path).unwrap());
        writer.add_directory("dir/", SimpleFileOptions::default()).unwrap();
        for (name, content, mode) in files {
            writer.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode)).unwrap();
            writer.write_all(content).unwrap();
        }
        writer.finish().unwrap();
    }

    fn limits(max: u64) -> PackageLimits {
        PackageLimits { max_package_size: max, min_cached_size: 1, max_cached_size: 1 << 20 }
    }

    #[test]
    fn packages_merge_cached_files_and_feed_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobstore::new(dir.path()).unwrap();
        let upload = dir.path().join("upload.zip");
        zip_with(&upload, &[("run.sh", b"echo hi", 0o755), ("dir/data.txt", b"abc", 0o644)]);
        blobs.build_package(Some(&upload), &[], &blobs.package_zip("p1"), limits(1000)).unwrap();
        let abc_sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
        assert!(blobs.is_cached(abc_sha1));

        let second = dir.path().join("second.zip");
        zip_with(&second, &[("run.sh", b"echo hi", 0o755)]);
        let cached = CachedResource { sha1: abc_sha1.into(), size: 3, path: "copy/of/data.txt".into(), mode: 0o640 };
        blobs.build_package(Some(&second), &[cached], &blobs.package_zip("p2"), limits(1000)).unwrap();
        let out = dir.path().join("out");
        extract_zip(&blobs.package_zip("p2"), &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("copy/of/data.txt")).unwrap(), "abc");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(out.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn oversized_packages_and_missing_cache_entries_fail() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobstore::new(dir.path()).unwrap();
        let upload = dir.path().join("upload.zip");
        zip_with(&upload, &[("big", &[0u8; 100], 0o644)]);
        let err = blobs.build_package(Some(&upload), &[], &blobs.package_zip("p"), limits(99)).unwrap_err();
        assert_eq!(err, "Package may not be larger than 99 bytes");
        let missing = CachedResource { sha1: "0".repeat(40), size: 1, path: "x".into(), mode: 0o644 };
        let err = blobs.build_package(None, &[missing], &blobs.package_zip("p"), limits(99)).unwrap_err();
        assert!(err.contains("not in the cache"), "{err}");
        assert!(!blobs.package_zip("p").exists());
    }

    #[test]
    fn resource_paths_must_stay_inside_the_app() {
        assert!(safe_relative_path("a/b.txt"));
        assert!(!safe_relative_path("../etc/passwd"));
        assert!(!safe_relative_path("/etc/passwd"));
        assert!(!safe_relative_path(""));
    }
}
