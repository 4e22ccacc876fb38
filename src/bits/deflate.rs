//! Raw deflate in independent pieces that concatenate into one valid stream, so one large file can be compressed
//! on several cores at once (the scheme pigz uses).
//!
//! Every piece but the last ends with a sync flush, which closes its final block without the "last block" bit and
//! pads it to a byte boundary; the last piece finishes the stream. A piece after the first is primed with the last
//! 32 KiB of the previous piece's input as its dictionary, so matches still reach back across the seam and the
//! result compresses as well as one continuous stream.

use std::io;

use flate2::{Compress, Compression, FlushCompress, Status};

/// zlib's default level, the one `zip -r` uses.
pub(crate) const LEVEL: u32 = 6;
/// The deflate window: the most of the previous piece a dictionary can use.
pub(crate) const WINDOW: usize = 32 * 1024;

/// A reusable raw-deflate compressor (one per worker thread).
pub(crate) struct Deflater {
    compress: Compress,
}

impl Deflater {
    pub(crate) fn new() -> Deflater {
        Deflater { compress: Compress::new(Compression::new(LEVEL), false) }
    }

    /// Compresses one piece into `out` (cleared first). `dictionary` is the tail of the previous piece's input, if
    /// there was one; `last` ends the deflate stream.
    pub(crate) fn piece(
        &mut self,
        input: &[u8],
        dictionary: Option<&[u8]>,
        last: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        self.compress.reset();
        if let Some(dictionary) = dictionary {
            let tail = &dictionary[dictionary.len().saturating_sub(WINDOW)..];
            self.compress.set_dictionary(tail).map_err(io::Error::other)?;
        }
        out.clear();
        // zlib's compressBound plus room for the sync-flush marker; more is added if ever needed.
        out.reserve(input.len() + (input.len() >> 12) + (input.len() >> 14) + 64);
        let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
        let mut consumed = 0usize;
        loop {
            let before = self.compress.total_in();
            let status = self.compress.compress_vec(&input[consumed..], out, flush).map_err(io::Error::other)?;
            consumed += (self.compress.total_in() - before) as usize;
            match status {
                Status::StreamEnd => return Ok(()),
                // A sync flush is complete once all input is in and the output did not fill up.
                _ if !last && consumed == input.len() && out.len() < out.capacity() => {
                    return Ok(());
                }
                _ => out.reserve(out.capacity().max(64 * 1024)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn inflate(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        // Text-like with long-range repeats, plus a noisy stretch that does not compress.
        let mut v = Vec::with_capacity(len);
        let mut x = 0x2545_f491_u32;
        while v.len() < len {
            if v.len() % 300_000 < 100_000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(x as u8);
            } else {
                v.extend_from_slice(format!("line {} of the sample text\n", v.len() % 977).as_bytes());
            }
        }
        v.truncate(len);
        v
    }

    #[test]
    fn pieces_concatenate_into_one_stream() {
        let data = sample(1_300_000);
        let mut d = Deflater::new();
        let mut stream = Vec::new();
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = data.chunks(256 * 1024).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let dictionary = (i > 0).then(|| pieces[i - 1]);
            d.piece(piece, dictionary, i == pieces.len() - 1, &mut out).unwrap();
            stream.extend_from_slice(&out);
        }
        assert_eq!(inflate(&stream), data);

        // The dictionary keeps the ratio of one continuous stream (within 1%).
        let mut whole = Vec::new();
        d.piece(&data, None, true, &mut whole).unwrap();
        assert!((stream.len() as f64) < whole.len() as f64 * 1.01, "{} vs {}", stream.len(), whole.len());
    }

    #[test]
    fn empty_and_incompressible_inputs() {
        let mut d = Deflater::new();
        let mut out = Vec::new();
        d.piece(b"", None, true, &mut out).unwrap();
        assert_eq!(inflate(&out), b"");
        let noise = sample(90_000);
        d.piece(&noise, None, true, &mut out).unwrap();
        assert_eq!(inflate(&out), noise);
        assert!(out.len() < noise.len() + 100, "stored blocks bound the growth");
    }
}
