//! What the tests of cf-sim and the tests of its users share: zip archives built in memory, as apps are
//! uploaded to a Cloud Controller.

use std::io::{Cursor, Write};

pub use zip::CompressionMethod;

/// One entry of an archive: its name (a directory when it ends in `/`), its contents, and its unix mode, or
/// `None` for an entry made on DOS (no mode at all).
pub type ZipEntry<'a> = (&'a str, &'a [u8], Option<u32>);

/// A zip archive holding `entries` in order, each compressed with `method`.
pub fn zip(method: CompressionMethod, entries: &[ZipEntry]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        let options = match mode {
            Some(mode) => options.unix_permissions(*mode),
            None => options.system(zip::System::Dos),
        };
        if name.ends_with('/') {
            zip.add_directory(*name, options).expect("a zip directory entry");
        } else {
            zip.start_file(*name, options).expect("a zip file entry");
            zip.write_all(data).expect("writing to memory");
        }
    }
    zip.finish().expect("finishing a zip in memory").into_inner()
}
