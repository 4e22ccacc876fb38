//! Zip archives for the tests: written from a list of entries (cf-sim's test kit builds them) or from a
//! directory (as `cf push` uploads one), and read back.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cf_sim::testkit::{self, CompressionMethod};

pub use cf_sim::testkit::ZipEntry as Entry;

/// Writes a zip at `dest` holding `entries` in order, compressed with `method`.
pub fn zip(dest: &Path, method: CompressionMethod, entries: &[Entry]) {
    std::fs::write(dest, testkit::zip(method, entries)).unwrap();
}

/// Zips `dir` (recursively, keeping unix modes) into `dest`, as `cf push` uploads an app directory. Entries are
/// stored, not deflated: compressing a binary in an unoptimised test build takes seconds, and loopback is fast.
pub fn zip_dir(dir: &Path, dest: &Path) {
    fn add(entries: &mut Vec<(String, Vec<u8>, u32)>, root: &Path, dir: &Path) {
        let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let name = path.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if path.is_dir() {
                entries.push((format!("{name}/"), Vec::new(), mode));
                add(entries, root, &path);
            } else {
                entries.push((name, std::fs::read(&path).unwrap(), mode));
            }
        }
    }
    let mut entries = Vec::new();
    add(&mut entries, dir, dir);
    let entries: Vec<Entry> =
        entries.iter().map(|(name, data, mode)| (name.as_str(), data.as_slice(), Some(*mode))).collect();
    zip(dest, CompressionMethod::Stored, &entries);
}

/// The files in the zip at `path` (directories left out): name → contents.
pub fn files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        if entry.is_dir() {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(entry.name().unwrap().to_string(), data);
    }
    out
}
