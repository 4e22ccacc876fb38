//! Writing the package zip: the resources CC does not already cache, streamed into a temp file.
//!
//! Like `cf push`, the zip holds every directory (name ending in `/`), symlink (content = link target) and file
//! that is not cached, with its unix mode, files deflated; each file is hashed again while it is read and the
//! package fails with [`BitsError::FileChanged`] if its SHA-1 is no longer the one gathered.
//!
//! Three kinds of thread share the work. One reader goes through the resources in order, reads each file in
//! pieces of at most 512 KiB, hashes it (SHA-1 and CRC-32) and queues the pieces. Compression workers (one per
//! core) deflate pieces independently (see [`deflate`](super::deflate)), so a single large file also uses every
//! core. The caller's thread puts the compressed pieces back in order and writes them to the temp file. A byte
//! budget caps the data in flight (read but not yet written) at 16 MiB, so memory stays flat however large the
//! tree or its files.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use sha1::{Digest, Sha1};
use tempfile::NamedTempFile;

use super::archive::{self, Archive};
use super::deflate::{Deflater, WINDOW};
use super::error::BitsError;
use super::hash::to_hex;
use super::resource::{Kind, Resource};
use super::source::AppBits;
use super::zipfile::{DosTime, EntryHeader, Method, S_IFDIR, S_IFLNK, S_IFREG, ZipOut};

/// Files are read and compressed in pieces of this size.
const PIECE: usize = 512 * 1024;
/// Most bytes read but not yet written (input plus compressed output).
const BUDGET: usize = 16 * 1024 * 1024;
/// What a tiny piece costs against the budget, which bounds how many pieces can wait to be written.
const MIN_CHARGE: usize = 4 * 1024;
const WRITE_BUF: usize = 256 * 1024;

/// The package zip in its temp file (deleted when this is dropped), and how it was made.
#[derive(Debug)]
pub struct PackageZip {
    file: NamedTempFile,
    stats: PackageStats,
}

/// What went into a [`PackageZip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageStats {
    /// Zip entries of every kind (files, directories, symlinks).
    pub entries: usize,
    /// Regular files zipped.
    pub files: usize,
    /// Uncompressed bytes of those files.
    pub bytes_in: u64,
    /// Length of the zip file.
    pub zip_bytes: u64,
    pub elapsed: Duration,
}

impl PackageZip {
    /// Where the zip is; it lives as long as this value.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Length of the zip in bytes (the exact size to announce in the upload).
    pub fn len(&self) -> u64 {
        self.stats.zip_bytes
    }

    /// True when the zip has no entries, because CC caches every file and there are no directories or symlinks:
    /// the upload can then leave out the `bits` part, as the CLI does.
    pub fn is_empty(&self) -> bool {
        self.stats.entries == 0
    }

    pub fn stats(&self) -> PackageStats {
        self.stats
    }

    /// A fresh read handle on the zip, positioned at its start, for streaming the upload.
    pub fn reopen(&self) -> io::Result<File> {
        self.file.reopen()
    }
}

/// Writes the zip of every resource that is not [cached](Resource::is_cached) in `already_cached` (SHA-1s that CC
/// reported in resource matching) to a temp file.
///
/// `resources` comes from [`gather`](super::gather) on the same `bits`.
pub fn write_zip(bits: &AppBits, resources: &[Resource], already_cached: &HashSet<String>) -> Result<PackageZip> {
    let started = Instant::now();
    let todo: Vec<&Resource> = resources.iter().filter(|r| !r.is_cached(already_cached)).collect();
    let temp = tempfile::Builder::new()
        .prefix("cf-package-")
        .suffix(".zip")
        .tempfile()
        .context("cannot create a temp file for the package zip")?;
    let out = temp.reopen().context("cannot open the package temp file")?;
    let source = if bits.is_archive() {
        let mut zip = archive::open(bits.path())?;
        let index = archive::entries(&mut zip)?.into_iter().map(|e| (e.path, e.index)).collect();
        Source::Archive { zip, index }
    } else {
        Source::Directory(bits.path())
    };

    let written = pipeline(&source, &todo, BufWriter::with_capacity(WRITE_BUF, out))?;
    let files: Vec<&&Resource> = todo.iter().filter(|r| r.kind == Kind::File).collect();
    Ok(PackageZip {
        file: temp,
        stats: PackageStats {
            entries: todo.len(),
            files: files.len(),
            bytes_in: files.iter().map(|r| r.size).sum(),
            zip_bytes: written,
            elapsed: started.elapsed(),
        },
    })
}

enum Source<'a> {
    Directory(&'a Path),
    Archive { zip: Archive, index: HashMap<String, usize> },
}

/// How a piece fits into the zip.
enum Frame {
    /// A complete entry: a small file, a directory or a symlink.
    Whole {
        header: EntryHeader,
        crc32: u32,
        size: u64,
    },
    /// The first piece of a file read in several.
    Start {
        header: EntryHeader,
        size: u64,
    },
    Middle,
    /// The last piece of a file read in several.
    End {
        crc32: u32,
        size: u64,
    },
}

/// Input for a compression worker.
struct Job {
    seq: u64,
    charge: usize,
    frame: Frame,
    input: Vec<u8>,
    dictionary: Option<Vec<u8>>,
}

/// Ready to be written: `data` is final (deflated or stored as the frame's header says).
struct Ready {
    seq: u64,
    charge: usize,
    frame: Frame,
    data: Vec<u8>,
}

/// Caps the bytes in flight; the reader waits on it, the writer releases it.
struct Budget {
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Budget {
    /// Takes `n` bytes (a piece larger than the whole budget passes when nothing else is in flight). False once
    /// the run is aborted.
    fn take(&self, n: usize) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.1 && state.0 > 0 && state.0 + n > BUDGET {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.1 {
            return false;
        }
        state.0 += n;
        true
    }

    fn give(&self, n: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= n;
        self.freed.notify_all();
    }

    fn abort(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.freed.notify_all();
    }
}

fn pipeline(source: &Source<'_>, todo: &[&Resource], out: BufWriter<File>) -> Result<u64> {
    let budget = Budget { state: Mutex::new((0, false)), freed: Condvar::new() };
    let aborted = AtomicBool::new(false);
    let workers = thread::available_parallelism().map_or(1, |n| n.get());
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Mutex::new(job_rx);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Ready>>();

    thread::scope(|scope| {
        let reader = {
            let ready_tx = ready_tx.clone();
            let (budget, aborted) = (&budget, &aborted);
            scope.spawn(move || {
                let result = read_all(source, todo, budget, aborted, &job_tx, &ready_tx);
                if result.is_err() {
                    aborted.store(true, Ordering::Relaxed);
                    budget.abort();
                }
                result
            })
        };
        for _ in 0..workers {
            let ready_tx = ready_tx.clone();
            let (job_rx, budget, aborted) = (&job_rx, &budget, &aborted);
            scope.spawn(move || {
                // A panicking worker takes its pieces with it: stop the reader rather than let it wait for budget
                // that will never be given back.
                let _guard = AbortOnPanic { budget, aborted };
                compress_jobs(job_rx, &ready_tx)
            });
        }
        drop(ready_tx);

        let written = write_in_order(ready_rx, out, &budget);
        if written.is_err() {
            aborted.store(true, Ordering::Relaxed);
            budget.abort();
        }
        let read = reader.join().unwrap_or_else(|_| Err(anyhow!("the package reader thread panicked")));
        // The reader's error (a changed file, say) explains a short write better than the writer's.
        read?;
        written
    })
}

/// The reader: goes through `todo` in order, queues file pieces for compression and sends directories and
/// symlinks straight to the writer.
fn read_all(
    source: &Source<'_>,
    todo: &[&Resource],
    budget: &Budget,
    aborted: &AtomicBool,
    jobs: &mpsc::Sender<Job>,
    ready: &mpsc::Sender<Result<Ready>>,
) -> Result<()> {
    let mut seq = 0u64;
    let mut zip = match source {
        Source::Archive { zip, .. } => Some(zip.clone()),
        Source::Directory(_) => None,
    };
    for resource in todo {
        if aborted.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (kind_bits, method) = match resource.kind {
            Kind::Dir => (S_IFDIR, Method::Stored),
            Kind::Symlink => (S_IFLNK, Method::Stored),
            Kind::File => (S_IFREG, Method::Deflated),
        };
        let name = if resource.kind == Kind::Dir { format!("{}/", resource.path) } else { resource.path.clone() };
        let header =
            |modified| EntryHeader { name: name.clone(), method, unix_mode: kind_bits | resource.mode, modified };

        match source {
            Source::Directory(root) => {
                let path = root.join(&resource.path);
                match resource.kind {
                    Kind::Dir => {
                        let modified = std::fs::symlink_metadata(&path).ok().map_or(DosTime::EPOCH, |m| dos_time(&m));
                        send_stored(seq, header(modified), Vec::new(), budget, ready)?;
                    }
                    Kind::Symlink => {
                        let meta = std::fs::symlink_metadata(&path).map_err(|_| changed(resource))?;
                        let target = std::fs::read_link(&path).map_err(|_| changed(resource))?;
                        let data = target.as_os_str().as_bytes().to_vec();
                        send_stored(seq, header(dos_time(&meta)), data, budget, ready)?;
                    }
                    Kind::File => {
                        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                        let meta = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
                        if !meta.is_file() {
                            return Err(changed(resource));
                        }
                        seq = read_file(seq, resource, header(dos_time(&meta)), file, budget, jobs)?;
                        continue;
                    }
                }
            }
            Source::Archive { index, .. } => {
                let zip = zip.as_mut().expect("archive handle");
                let entry_index = *index.get(&resource.path).ok_or_else(|| changed(resource))?;
                let mut entry = zip
                    .by_index(entry_index)
                    .with_context(|| format!("cannot read '{}' in the archive", resource.path))?;
                let modified = entry
                    .last_modified()
                    .map_or(DosTime::EPOCH, |t| DosTime { date: t.datepart(), time: t.timepart() });
                match resource.kind {
                    Kind::Dir => send_stored(seq, header(modified), Vec::new(), budget, ready)?,
                    Kind::Symlink => {
                        let mut target = Vec::new();
                        entry
                            .read_to_end(&mut target)
                            .with_context(|| format!("cannot read '{}' in the archive", resource.path))?;
                        send_stored(seq, header(modified), target, budget, ready)?;
                    }
                    Kind::File => {
                        seq = read_file(seq, resource, header(modified), entry, budget, jobs)?;
                        continue;
                    }
                }
            }
        }
        seq += 1;
    }
    Ok(())
}

/// Reads one file in pieces, hashing as it goes, and queues the pieces; returns the next sequence number.
fn read_file(
    mut seq: u64,
    resource: &Resource,
    header: EntryHeader,
    mut reader: impl Read,
    budget: &Budget,
    jobs: &mpsc::Sender<Job>,
) -> Result<u64> {
    let size = resource.size;
    let pieces = size.div_ceil(PIECE as u64).max(1);
    let mut sha1 = Sha1::new();
    let mut crc = crc32fast::Hasher::new();
    let mut header = Some(header);
    let mut previous: Option<Vec<u8>> = None;
    for piece in 0..pieces {
        let len = (size - piece * PIECE as u64).min(PIECE as u64) as usize;
        let charge = (2 * len).max(MIN_CHARGE);
        if !budget.take(charge) {
            return Ok(seq);
        }
        let mut input = vec![0u8; len];
        let read = read_full(&mut reader, &mut input).with_context(|| format!("cannot read '{}'", resource.path))?;
        if read < len {
            return Err(changed(resource));
        }
        sha1.update(&input);
        crc.update(&input);
        let last = piece + 1 == pieces;
        if last {
            // Nothing may follow, and the contents must be the ones gathered.
            let mut probe = [0u8; 1];
            if read_full(&mut reader, &mut probe).with_context(|| format!("cannot read '{}'", resource.path))? > 0
                || to_hex(&sha1.clone().finalize()) != resource.sha1
            {
                return Err(changed(resource));
            }
        }
        let frame = match (piece == 0, last) {
            (true, true) => {
                Frame::Whole { header: header.take().expect("header"), crc32: crc.clone().finalize(), size }
            }
            (true, false) => Frame::Start { header: header.take().expect("header"), size },
            (false, false) => Frame::Middle,
            (false, true) => Frame::End { crc32: crc.clone().finalize(), size },
        };
        let dictionary = previous.take();
        if !last {
            previous = Some(input[input.len().saturating_sub(WINDOW)..].to_vec());
        }
        let job = Job { seq, charge, frame, input, dictionary };
        jobs.send(job).map_err(|_| anyhow!("the package compressors stopped"))?;
        seq += 1;
    }
    Ok(seq)
}

fn send_stored(
    seq: u64,
    header: EntryHeader,
    data: Vec<u8>,
    budget: &Budget,
    ready: &mpsc::Sender<Result<Ready>>,
) -> Result<()> {
    let charge = data.len().max(MIN_CHARGE);
    if !budget.take(charge) {
        return Ok(());
    }
    let frame = Frame::Whole { header, crc32: crc32fast::hash(&data), size: data.len() as u64 };
    ready.send(Ok(Ready { seq, charge, frame, data })).map_err(|_| anyhow!("the package writer stopped"))
}

struct AbortOnPanic<'a> {
    budget: &'a Budget,
    aborted: &'a AtomicBool,
}

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.aborted.store(true, Ordering::Relaxed);
            self.budget.abort();
        }
    }
}

/// A compression worker: deflates queued pieces until the reader is done.
fn compress_jobs(jobs: &Mutex<mpsc::Receiver<Job>>, ready: &mpsc::Sender<Result<Ready>>) {
    let mut deflater = Deflater::new();
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = job else { return };
        let last = matches!(job.frame, Frame::Whole { .. } | Frame::End { .. });
        let mut data = Vec::new();
        let result = deflater
            .piece(&job.input, job.dictionary.as_deref(), last, &mut data)
            .map(|()| Ready { seq: job.seq, charge: job.charge, frame: job.frame, data })
            .context("deflate failed");
        if ready.send(result).is_err() {
            return;
        }
    }
}

/// The writer: takes finished pieces as they come, puts them in order and writes the zip.
fn write_in_order(ready: mpsc::Receiver<Result<Ready>>, out: BufWriter<File>, budget: &Budget) -> Result<u64> {
    let mut zip = ZipOut::new(out);
    let mut waiting: HashMap<u64, Ready> = HashMap::new();
    let mut next = 0u64;
    for piece in ready {
        let piece = piece?;
        waiting.insert(piece.seq, piece);
        while let Some(piece) = waiting.remove(&next) {
            let charge = piece.charge;
            write_piece(&mut zip, piece).context("cannot write the package zip")?;
            // Released only once written: the budget bounds the pieces waiting here too.
            budget.give(charge);
            next += 1;
        }
    }
    if !waiting.is_empty() {
        return Err(anyhow!("the package zip is missing pieces (a compression worker stopped)"));
    }
    let (out, len) = zip.finish().context("cannot write the package zip")?;
    out.into_inner().map_err(|e| e.into_error()).context("cannot write the package zip")?;
    Ok(len)
}

fn write_piece(zip: &mut ZipOut<BufWriter<File>>, piece: Ready) -> io::Result<()> {
    match piece.frame {
        Frame::Whole { header, crc32, size } => zip.add(&header, crc32, size, &piece.data),
        Frame::Start { header, size } => {
            zip.start(&header, size)?;
            zip.write_data(&piece.data)
        }
        Frame::Middle => zip.write_data(&piece.data),
        Frame::End { crc32, size } => {
            zip.write_data(&piece.data)?;
            zip.end(crc32, size)
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn changed(resource: &Resource) -> anyhow::Error {
    BitsError::FileChanged { path: resource.path.clone() }.into()
}

fn dos_time(meta: &std::fs::Metadata) -> DosTime {
    let secs = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    DosTime::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
}
