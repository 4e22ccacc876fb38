//! Reading app bits out of a zip archive (.zip, .jar, .war) as if it were a directory.
//!
//! Entry names are normalised to relative `/` paths; a name that is absolute or climbs out of the archive is an
//! error, because CC would reject it too. If a name occurs twice, the first entry wins, in gathering and zipping
//! alike. Files keep their unix mode when the archive was made on unix, and get 0744 (the CLI's
//! `DefaultArchiveFilePermissions`) when it has none; directories get 0755.
//!
//! The archive is opened once; [`ArchiveFile`] reads with positional I/O, so each hashing or zipping thread clones
//! the parsed archive cheaply and reads independently.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use zip::ZipArchive;

use super::resource::Kind;

/// Mode of archive files that carry no unix mode.
const DEFAULT_ARCHIVE_FILE_MODE: u32 = 0o744;
/// Mode of every directory.
pub(crate) const DIR_MODE: u32 = 0o755;
/// The root `.cfignore` is read into memory; anything bigger than this is not a real ignore file.
const MAX_CFIGNORE: u64 = 1 << 20;

/// A shared, cheaply cloned read handle on the archive file.
#[derive(Clone)]
pub(crate) struct ArchiveFile {
    file: Arc<File>,
    len: u64,
    pos: u64,
}

impl Read for ArchiveFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ArchiveFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

pub(crate) type Archive = ZipArchive<ArchiveFile>;

pub(crate) fn open(path: &Path) -> Result<Archive> {
    let file = File::open(path).with_context(|| format!("cannot open archive {}", path.display()))?;
    let len = file.metadata()?.len();
    let reader = ArchiveFile { file: Arc::new(file), len, pos: 0 };
    ZipArchive::new(reader).with_context(|| format!("cannot read archive {}", path.display()))
}

/// One usable entry of the archive.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) index: usize,
    pub(crate) path: String,
    pub(crate) kind: Kind,
    pub(crate) mode: u32,
    /// Uncompressed size from the central directory (0 for directories and symlinks).
    pub(crate) size: u64,
}

/// Every entry, normalised and de-duplicated, in archive order.
pub(crate) fn entries(archive: &mut Archive) -> Result<Vec<Entry>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let file = archive.by_index_raw(index).with_context(|| format!("cannot read archive entry #{index}"))?;
        let raw_name = file
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(file.name_raw()).into_owned());
        let path = file
            .enclosed_name()
            .and_then(|p| normalise(&p))
            .ok_or_else(|| anyhow!("archive entry '{raw_name}' points outside the archive; refusing to push it"))?;
        if path.is_empty() || !seen.insert(path.clone()) {
            continue;
        }
        let unix_mode = (file.system() == zip::System::Unix).then(|| file.unix_mode()).flatten();
        let (kind, mode) = if file.is_dir() {
            (Kind::Dir, DIR_MODE)
        } else if file.is_symlink() {
            (Kind::Symlink, unix_mode.map_or(0o777, |m| m & 0o777))
        } else {
            let mode = match unix_mode.map(|m| m & 0o777) {
                Some(m) if m != 0 => super::gather::file_mode(m),
                _ => DEFAULT_ARCHIVE_FILE_MODE,
            };
            (Kind::File, mode)
        };
        let size = if kind == Kind::File { file.size() } else { 0 };
        out.push(Entry { index, path, kind, mode, size });
    }
    Ok(out)
}

/// The content of the archive's root `.cfignore`, if it has one.
pub(crate) fn root_cfignore(archive: &mut Archive, entries: &[Entry]) -> Result<Option<String>> {
    let Some(entry) = entries.iter().find(|e| e.path == ".cfignore" && e.kind == Kind::File) else {
        return Ok(None);
    };
    let file = archive.by_index(entry.index).context("cannot read .cfignore in the archive")?;
    let mut text = String::new();
    file.take(MAX_CFIGNORE)
        .read_to_string(&mut text)
        .context("cannot read .cfignore in the archive (is it UTF-8 text?)")?;
    Ok(Some(text))
}

/// `a/./b/../c/` → `a/c`; `None` if it climbs above the root.
fn normalise(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_entry_names() {
        assert_eq!(normalise(Path::new("a/./b/../c/")).as_deref(), Some("a/c"));
        assert_eq!(normalise(Path::new("./")).as_deref(), Some(""));
        assert_eq!(normalise(Path::new("../x")), None);
        assert_eq!(normalise(Path::new("/etc/passwd")), None);
    }
}
