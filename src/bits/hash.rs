//! Streaming SHA-1 of file contents through a fixed buffer, so memory stays flat whatever the file sizes.

use std::io::{self, Read};

use sha1::{Digest, Sha1};

/// Read buffer per hashing thread.
pub(crate) const READ_BUF: usize = 256 * 1024;

/// Lower-case hex of a digest.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Hex SHA-1 of everything `reader` yields, and how many bytes that was.
pub(crate) fn sha1_stream(mut reader: impl Read, buf: &mut [u8]) -> io::Result<(String, u64)> {
    let mut hasher = Sha1::new();
    let mut total = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((to_hex(&hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut buf = [0u8; 7];
        assert_eq!(
            sha1_stream(&b"abc"[..], &mut buf).unwrap(),
            ("a9993e364706816aba3e25717850c26c9cd0d89d".to_string(), 3)
        );
        assert_eq!(sha1_stream(&b""[..], &mut buf).unwrap().0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        // Longer than the buffer: the digest must not depend on how the input was split.
        let long = vec![b'a'; 1000];
        assert_eq!(sha1_stream(&long[..], &mut buf).unwrap().0, "291e9a6c66994949b57ba5e650361e98fc36b1ba");
    }
}
