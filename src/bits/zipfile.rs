//! A minimal streaming zip writer for the package: entries go out one after the other, each either with known
//! sizes (written straight) or streamed in pieces and patched afterwards with a seek, so nothing but the central
//! directory is held in memory. ZIP64 records are written when sizes, offsets or the entry count need them.
//!
//! The entry data is produced elsewhere (raw deflate from [`deflate`](super::deflate), or stored bytes); this only
//! frames it. Entries are "made by" unix so that readers such as Info-ZIP `unzip` (which CC uses) restore the
//! permission bits kept in the external attributes, and names are flagged UTF-8 when they are not ASCII.

use std::io::{self, Seek, SeekFrom, Write};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EXTRA: u16 = 0x0001;
/// Version 4.5 (ZIP64), made on unix (3).
const MADE_BY: u16 = (3 << 8) | 45;
const FLAG_UTF8: u16 = 1 << 11;
const U32_MAX: u64 = u32::MAX as u64;
/// A streamed entry whose size hint reaches this gets ZIP64 sizes up front: deflate can grow incompressible data
/// slightly, and the local header has to be right before its data is written.
const ZIP64_HINT: u64 = 0xF000_0000;

pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFLNK: u32 = 0o120000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Stored = 0,
    Deflated = 8,
}

/// An MS-DOS date and time, as zip headers store them (two-second resolution, 1980–2107).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DosTime {
    pub(crate) date: u16,
    pub(crate) time: u16,
}

impl DosTime {
    /// 1980-01-01 00:00:00, the earliest a zip can say.
    pub(crate) const EPOCH: DosTime = DosTime { date: (1 << 5) | 1, time: 0 };

    /// From seconds since the unix epoch (UTC), clamped to the range a zip can hold.
    pub(crate) fn from_unix(secs: i64) -> DosTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's days-to-civil.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        if year < 1980 {
            return DosTime::EPOCH;
        }
        if year > 2107 {
            return DosTime { date: (127 << 9) | (12 << 5) | 31, time: (23 << 11) | (59 << 5) | 29 };
        }
        let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
        DosTime {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((hour << 11) | (minute << 5) | (second / 2)) as u16,
        }
    }
}

/// What goes into an entry's headers besides sizes and CRC.
pub(crate) struct EntryHeader {
    /// The entry name; directories end in `/`.
    pub(crate) name: String,
    pub(crate) method: Method,
    /// Unix mode including the file-type bits ([`S_IFREG`], [`S_IFDIR`], [`S_IFLNK`]).
    pub(crate) unix_mode: u32,
    pub(crate) modified: DosTime,
}

struct Open {
    header_offset: u64,
    name_len: u64,
    zip64: bool,
    written: u64,
    central_start: usize,
}

/// Writes a zip archive to `W`, entry by entry.
pub(crate) struct ZipOut<W: Write + Seek> {
    out: W,
    pos: u64,
    entries: u64,
    central: Vec<u8>,
    open: Option<Open>,
}

impl<W: Write + Seek> ZipOut<W> {
    /// `out` must be positioned at its start (a fresh file).
    pub(crate) fn new(out: W) -> ZipOut<W> {
        ZipOut { out, pos: 0, entries: 0, central: Vec::new(), open: None }
    }

    /// A whole entry whose data is at hand: `data` is stored or raw-deflated according to `header.method`, and
    /// `crc32` and `size` describe the uncompressed bytes.
    pub(crate) fn add(&mut self, header: &EntryHeader, crc32: u32, size: u64, data: &[u8]) -> io::Result<()> {
        let compressed = data.len() as u64;
        let zip64 = size >= U32_MAX || compressed >= U32_MAX;
        self.begin(header, zip64, Some((crc32, size, compressed)))?;
        self.write_data(data)?;
        self.finish_entry(crc32, size, false)
    }

    /// Starts an entry whose data will come through [`write_data`](Self::write_data), finished by
    /// [`end`](Self::end). `size_hint` is the expected uncompressed size.
    pub(crate) fn start(&mut self, header: &EntryHeader, size_hint: u64) -> io::Result<()> {
        self.begin(header, size_hint >= ZIP64_HINT, None)
    }

    pub(crate) fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        let open = self.open.as_mut().ok_or_else(|| io::Error::other("no zip entry is open"))?;
        self.out.write_all(data)?;
        open.written += data.len() as u64;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Ends the entry begun with [`start`](Self::start), writing its CRC and sizes into its local header.
    pub(crate) fn end(&mut self, crc32: u32, size: u64) -> io::Result<()> {
        self.finish_entry(crc32, size, true)
    }

    /// Writes the central directory and end records and returns the writer and the archive's length.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        if self.open.is_some() {
            return Err(io::Error::other("a zip entry is still open"));
        }
        let cd_offset = self.pos;
        let cd_size = self.central.len() as u64;
        self.out.write_all(&self.central)?;
        self.pos += cd_size;
        let mut end = Vec::with_capacity(98);
        if self.entries >= 0xFFFF || cd_offset >= U32_MAX || cd_size >= U32_MAX {
            let zip64_end = self.pos;
            put32(&mut end, ZIP64_END_OF_CENTRAL);
            put64(&mut end, 44);
            put16(&mut end, MADE_BY);
            put16(&mut end, 45);
            put32(&mut end, 0);
            put32(&mut end, 0);
            put64(&mut end, self.entries);
            put64(&mut end, self.entries);
            put64(&mut end, cd_size);
            put64(&mut end, cd_offset);
            put32(&mut end, ZIP64_LOCATOR);
            put32(&mut end, 0);
            put64(&mut end, zip64_end);
            put32(&mut end, 1);
        }
        put32(&mut end, END_OF_CENTRAL);
        put16(&mut end, 0);
        put16(&mut end, 0);
        put16(&mut end, self.entries.min(0xFFFF) as u16);
        put16(&mut end, self.entries.min(0xFFFF) as u16);
        put32(&mut end, cd_size.min(U32_MAX) as u32);
        put32(&mut end, cd_offset.min(U32_MAX) as u32);
        put16(&mut end, 0);
        self.out.write_all(&end)?;
        self.pos += end.len() as u64;
        self.out.flush()?;
        Ok((self.out, self.pos))
    }

    fn begin(&mut self, header: &EntryHeader, zip64: bool, known: Option<(u32, u64, u64)>) -> io::Result<()> {
        if self.open.is_some() {
            return Err(io::Error::other("the previous zip entry is still open"));
        }
        let name = header.name.as_bytes();
        let name_len = u16::try_from(name.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("zip entry name too long: {}", header.name))
        })?;
        let flags = if header.name.is_ascii() { 0 } else { FLAG_UTF8 };
        let needed: u16 = if zip64 { 45 } else { 20 };
        let (crc32, size, compressed) = known.unwrap_or((0, 0, 0));
        let header_offset = self.pos;

        let mut local = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut local, LOCAL_HEADER);
        put16(&mut local, needed);
        put16(&mut local, flags);
        put16(&mut local, header.method as u16);
        put16(&mut local, header.modified.time);
        put16(&mut local, header.modified.date);
        put32(&mut local, crc32);
        if zip64 {
            put32(&mut local, u32::MAX);
            put32(&mut local, u32::MAX);
        } else {
            put32(&mut local, compressed as u32);
            put32(&mut local, size as u32);
        }
        put16(&mut local, name_len);
        put16(&mut local, if zip64 { 20 } else { 0 });
        local.extend_from_slice(name);
        if zip64 {
            put16(&mut local, ZIP64_EXTRA);
            put16(&mut local, 16);
            put64(&mut local, size);
            put64(&mut local, compressed);
        }
        self.out.write_all(&local)?;
        self.pos += local.len() as u64;

        // The central record, completed with sizes and CRC when the entry ends.
        let central_start = self.central.len();
        let c = &mut self.central;
        put32(c, CENTRAL_HEADER);
        put16(c, MADE_BY);
        put16(c, needed);
        put16(c, flags);
        put16(c, header.method as u16);
        put16(c, header.modified.time);
        put16(c, header.modified.date);
        put32(c, 0); // crc32
        put32(c, 0); // compressed size
        put32(c, 0); // uncompressed size
        put16(c, name_len);
        put16(c, 0); // extra length
        put16(c, 0); // comment length
        put16(c, 0); // disk number
        put16(c, 0); // internal attributes
        let dos_dir = if header.unix_mode & 0o170000 == S_IFDIR { 0x10 } else { 0 };
        put32(c, (header.unix_mode << 16) | dos_dir);
        put32(c, 0); // local header offset
        c.extend_from_slice(name);

        self.open = Some(Open { header_offset, name_len: u64::from(name_len), zip64, written: 0, central_start });
        Ok(())
    }

    fn finish_entry(&mut self, crc32: u32, size: u64, patch: bool) -> io::Result<()> {
        let open = self.open.take().ok_or_else(|| io::Error::other("no zip entry is open"))?;
        let compressed = open.written;
        if !open.zip64 && (size >= U32_MAX || compressed >= U32_MAX) {
            return Err(io::Error::other("zip entry grew past 4 GiB after it was started"));
        }
        if patch {
            self.out.seek(SeekFrom::Start(open.header_offset + 14))?;
            self.out.write_all(&crc32.to_le_bytes())?;
            if open.zip64 {
                self.out.seek(SeekFrom::Start(open.header_offset + 30 + open.name_len + 4))?;
                self.out.write_all(&size.to_le_bytes())?;
                self.out.write_all(&compressed.to_le_bytes())?;
            } else {
                self.out.write_all(&(compressed as u32).to_le_bytes())?;
                self.out.write_all(&(size as u32).to_le_bytes())?;
            }
            self.out.seek(SeekFrom::Start(self.pos))?;
        }

        let mut extra = Vec::new();
        if open.zip64 {
            put64(&mut extra, size);
            put64(&mut extra, compressed);
        }
        let offset_in_extra = open.header_offset >= U32_MAX;
        if offset_in_extra {
            put64(&mut extra, open.header_offset);
        }
        let c = &mut self.central[open.central_start..];
        c[16..20].copy_from_slice(&crc32.to_le_bytes());
        let (csize32, size32) = if open.zip64 { (u32::MAX, u32::MAX) } else { (compressed as u32, size as u32) };
        c[20..24].copy_from_slice(&csize32.to_le_bytes());
        c[24..28].copy_from_slice(&size32.to_le_bytes());
        let offset32 = if offset_in_extra { u32::MAX } else { open.header_offset as u32 };
        c[42..46].copy_from_slice(&offset32.to_le_bytes());
        if !extra.is_empty() {
            c[30..32].copy_from_slice(&(extra.len() as u16 + 4).to_le_bytes());
            if offset_in_extra {
                c[6..8].copy_from_slice(&45u16.to_le_bytes());
            }
            put16(&mut self.central, ZIP64_EXTRA);
            put16(&mut self.central, extra.len() as u16);
            self.central.extend_from_slice(&extra);
        }
        self.entries += 1;
        Ok(())
    }
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;

    fn header(name: &str, method: Method, unix_mode: u32) -> EntryHeader {
        EntryHeader { name: name.to_string(), method, unix_mode, modified: DosTime::from_unix(1_700_000_000) }
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn dos_times() {
        // 2023-11-14 22:13:20 UTC
        let t = DosTime::from_unix(1_700_000_000);
        assert_eq!((t.date >> 9) + 1980, 2023);
        assert_eq!((t.date >> 5) & 0xf, 11);
        assert_eq!(t.date & 0x1f, 14);
        assert_eq!((t.time >> 11, (t.time >> 5) & 0x3f, (t.time & 0x1f) * 2), (22, 13, 20));
        assert_eq!(DosTime::from_unix(0), DosTime::EPOCH);
        assert_eq!(DosTime::from_unix(-5), DosTime::EPOCH);
        // 2000-02-29 12:00:00 UTC, a leap day.
        let leap = DosTime::from_unix(951_825_600);
        assert_eq!(((leap.date >> 9) + 1980, (leap.date >> 5) & 0xf, leap.date & 0x1f), (2000, 2, 29));
    }

    #[test]
    fn writes_an_archive_the_zip_crate_reads_back() {
        let body = b"hello hello hello hello, zip".repeat(100);
        let crc = crc32fast::hash(&body);
        let mut z = ZipOut::new(Cursor::new(Vec::new()));
        z.add(&header("dir/", Method::Stored, S_IFDIR | 0o755), 0, 0, &[]).unwrap();
        z.add(&header("dir/run.sh", Method::Deflated, S_IFREG | 0o755), crc, body.len() as u64, &deflate(&body))
            .unwrap();
        // Streamed in two pieces, patched afterwards.
        let packed = deflate(&body);
        z.start(&header("dir/ünïcode.txt", Method::Deflated, S_IFREG | 0o644), body.len() as u64).unwrap();
        z.write_data(&packed[..10]).unwrap();
        z.write_data(&packed[10..]).unwrap();
        z.end(crc, body.len() as u64).unwrap();
        z.add(&header("link", Method::Stored, S_IFLNK | 0o777), crc32fast::hash(b"dir/run.sh"), 10, b"dir/run.sh")
            .unwrap();
        let (cursor, len) = z.finish().unwrap();
        let bytes = cursor.into_inner();
        assert_eq!(len, bytes.len() as u64);

        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 4);
        let dir = archive.by_name("dir/").unwrap();
        assert!(dir.is_dir());
        assert_eq!(dir.unix_mode().unwrap() & 0o777, 0o755);
        drop(dir);
        for name in ["dir/run.sh", "dir/ünïcode.txt"] {
            let mut f = archive.by_name(name).unwrap();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            assert_eq!(out, body, "{name}");
        }
        assert_eq!(archive.by_name("dir/run.sh").unwrap().unix_mode().unwrap(), S_IFREG | 0o755);
        assert_eq!(archive.by_name("dir/ünïcode.txt").unwrap().unix_mode().unwrap(), S_IFREG | 0o644);
        let mut link = archive.by_name("link").unwrap();
        assert!(link.is_symlink());
        let mut target = String::new();
        link.read_to_string(&mut target).unwrap();
        assert_eq!(target, "dir/run.sh");
        drop(link);
        let modified = archive.by_name("dir/run.sh").unwrap().last_modified().unwrap();
        assert_eq!((modified.year(), modified.month(), modified.day()), (2023, 11, 14));
    }

    #[test]
    fn many_entries_get_zip64_end_records() {
        let mut z = ZipOut::new(Cursor::new(Vec::new()));
        let n = 70_000u32;
        for i in 0..n {
            let name = format!("f{i}");
            z.add(&header(&name, Method::Stored, S_IFREG | 0o644), crc32fast::hash(b"x"), 1, b"x").unwrap();
        }
        let bytes = z.finish().unwrap().0.into_inner();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), n as usize);
        let mut last = String::new();
        archive.by_name("f69999").unwrap().read_to_string(&mut last).unwrap();
        assert_eq!(last, "x");
    }
}
