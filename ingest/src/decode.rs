//! Turning the stored bytes of an object into the log text: gunzip when the bytes are gzip
//! (every member of a multi-member stream, as CloudTrail and Firehose write them), pass-through
//! otherwise, with caps on the decompressed size and on the compression ratio so that a gzip bomb
//! is an error, not an outage.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::{IngestError, Result};

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Default cap on the decompressed size of one object: real CloudTrail, flow and DNS files are at
/// most tens of MB, and the cap bounds what one hostile object can make the ingest hold in memory.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 256 << 20;

/// Default cap on decompressed ÷ stored size. Real CloudTrail, flow and DNS files compress 5 to 30
/// times; deflate can reach about 1032 times, and only crafted or degenerate files come close.
pub const DEFAULT_MAX_RATIO: u64 = 200;

/// Below this decompressed size the ratio is not checked: a small file of repeated lines may well
/// compress 300 times, and a megabyte costs nothing.
const RATIO_FLOOR_BYTES: u64 = 1 << 20;

/// What one object may decompress to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Cap on the content's size, decompressed or stored as it is.
    pub max_bytes: u64,
    /// Cap on decompressed ÷ stored size, checked past the first MiB; 0 turns it off.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: DEFAULT_MAX_OBJECT_BYTES, max_ratio: DEFAULT_MAX_RATIO }
    }
}

impl Limits {
    /// Only a size cap, no ratio cap.
    pub fn bytes(max_bytes: u64) -> Self {
        Limits { max_bytes, max_ratio: 0 }
    }

    /// How many decompressed bytes an object of `stored` bytes may produce.
    fn allowed(&self, stored: u64) -> u64 {
        match self.max_ratio {
            0 => self.max_bytes,
            ratio => self.max_bytes.min(stored.saturating_mul(ratio).max(RATIO_FLOOR_BYTES)),
        }
    }
}

/// Whether the bytes start like a gzip stream.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// The object's content, decompressed if it is gzip, within `limits`.
///
/// `key` only names the object in errors.
pub fn decompress(key: &str, data: Vec<u8>, limits: Limits) -> Result<Vec<u8>> {
    let limit_bytes = limits.max_bytes;
    if !is_gzip(&data) {
        if data.len() as u64 > limit_bytes {
            return Err(IngestError::TooLarge { key: key.to_owned(), limit_bytes });
        }
        return Ok(data);
    }
    let stored_bytes = data.len() as u64;
    // Reading stops one byte past what is allowed: a bomb costs at most that much memory and time.
    let allowed = limits.allowed(stored_bytes);
    let mut out = Vec::with_capacity(initial_capacity(&data, allowed));
    let mut decoder = MultiGzDecoder::new(data.as_slice()).take(allowed + 1);
    decoder.read_to_end(&mut out).map_err(|e| IngestError::Gzip {
        key: key.to_owned(),
        reason: match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "truncated gzip stream (unexpected end of data)".to_owned(),
            _ => e.to_string(),
        },
    })?;
    if out.len() as u64 > allowed {
        return Err(if allowed == limit_bytes {
            IngestError::TooLarge { key: key.to_owned(), limit_bytes }
        } else {
            IngestError::TooCompressed { key: key.to_owned(), stored_bytes, max_ratio: limits.max_ratio }
        });
    }
    Ok(out)
}

/// Deflate cannot expand input more than about 1032 to 1 (258-byte matches coded in 2 bits).
const MAX_DEFLATE_RATIO: u64 = 1032;

/// How much room to reserve for the decompressed content.
///
/// The trailer's ISIZE is the last member's size mod 2^32: a good first guess for one-member files,
/// but written by whoever wrote the object, so it is never trusted beyond the limit nor beyond what
/// the compressed bytes could possibly expand to (a 4-byte object must not reserve 256 MiB).
fn initial_capacity(data: &[u8], limit_bytes: u64) -> usize {
    let stored = data.len() as u64;
    let trailer = data
        .len()
        .checked_sub(4)
        .and_then(|at| data.get(at..))
        .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as u64)
        .unwrap_or(0);
    let hint = trailer.max(stored).min(stored.saturating_mul(MAX_DEFLATE_RATIO)).min(limit_bytes).min(256 << 20);
    hint as usize + 1
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).expect("write");
        enc.finish().expect("finish")
    }

    /// As a bomb's author would compress it.
    fn gz_best(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(data).expect("write");
        enc.finish().expect("finish")
    }

    #[test]
    fn plain_and_gzip_and_multi_member() {
        assert_eq!(decompress("k", b"plain text".to_vec(), Limits::bytes(100)).expect("plain"), b"plain text");
        assert_eq!(decompress("k", gz(b"hello"), Limits::bytes(100)).expect("gz"), b"hello");
        let mut two = gz(b"first,");
        two.extend(gz(b"second"));
        assert_eq!(decompress("k", two, Limits::bytes(100)).expect("multi"), b"first,second");
        assert_eq!(decompress("k", Vec::new(), Limits::bytes(100)).expect("empty"), b"");
    }

    #[test]
    fn broken_gzip_is_an_error_naming_the_object() {
        let whole = gz(&b"x".repeat(10_000));
        let truncated = whole[..whole.len() / 2].to_vec();
        let err = decompress("AWSLogs/a.json.gz", truncated, Limits::default()).expect_err("truncated");
        assert!(matches!(err, IngestError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("AWSLogs/a.json.gz") && err.to_string().contains("truncated"), "{err}");

        let mut corrupt = whole.clone();
        for b in corrupt.iter_mut().skip(12).take(20) {
            *b ^= 0x5a;
        }
        let err = decompress("k", corrupt, Limits::default()).expect_err("corrupt");
        assert!(matches!(err, IngestError::Gzip { .. }), "{err}");

        // Only the magic bytes: a header cut short.
        let err = decompress("k", GZIP_MAGIC.to_vec(), Limits::default()).expect_err("header only");
        assert!(matches!(err, IngestError::Gzip { .. }), "{err}");
    }

    #[test]
    fn the_size_trailer_cannot_make_a_tiny_object_reserve_much() {
        // Gzip magic and a trailer claiming 4 GiB - 1 bytes.
        let liar = [0x1f, 0x8b, 0x08, 0x00, 0xff, 0xff, 0xff, 0xff];
        assert!(initial_capacity(&liar, DEFAULT_MAX_OBJECT_BYTES) <= 8 * 1032 + 1);
        let honest = gz(&b"y".repeat(100_000));
        assert_eq!(initial_capacity(&honest, DEFAULT_MAX_OBJECT_BYTES), 100_001);
        assert_eq!(initial_capacity(&honest, 1000), 1001);
    }

    #[test]
    fn decompressed_size_is_capped() {
        let bomb = gz(&vec![0u8; 1 << 20]);
        let err = decompress("bomb.gz", bomb, Limits::bytes(1000)).expect_err("bomb");
        assert!(matches!(err, IngestError::TooLarge { limit_bytes: 1000, .. }), "{err}");
        let err = decompress("big.txt", vec![b'a'; 2000], Limits::bytes(1000)).expect_err("plain too big");
        assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn a_bomb_under_the_size_cap_is_stopped_by_the_ratio() {
        // 64 MiB of zeros compress about 1000 times: under the 256 MiB cap, far over the ratio.
        let bomb = gz_best(&vec![0u8; 64 << 20]);
        let stored = bomb.len() as u64;
        let Err(err) = decompress("AWSLogs/bomb.json.gz", bomb, Limits::default()) else { panic!("bomb accepted") };
        assert!(matches!(err, IngestError::TooCompressed { max_ratio: DEFAULT_MAX_RATIO, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("AWSLogs/bomb.json.gz") && text.contains(&format!("{stored} stored bytes")), "{text}");
        assert_eq!(err.kind(), "too_large");

        // The same content with the ratio check off decompresses whole.
        let bomb = gz_best(&vec![0u8; 64 << 20]);
        let off = Limits { max_ratio: 0, ..Limits::default() };
        assert_eq!(decompress("k", bomb, off).expect("no ratio cap").len(), 64 << 20);
    }

    #[test]
    fn small_or_ordinary_objects_are_not_held_to_the_ratio() {
        // 900 KiB of one repeated line: over 200 times, but under the floor where the ratio counts.
        let repeated = b"2 111122223333 eni-0a1b2c3d - - - - - - - 1714521600 1714521660 - NODATA\n".repeat(12_000);
        assert!(repeated.len() < (1 << 20));
        let stored = gz_best(&repeated);
        assert!(repeated.len() as u64 > 200 * stored.len() as u64, "{} vs {}", repeated.len(), stored.len());
        assert_eq!(decompress("k", stored, Limits::default()).expect("small").len(), repeated.len());

        // Log-like text a few MiB long compresses far less than the ratio.
        let lines: String = (0..60_000u32)
            .map(|i| format!("2 111122223333 eni-{i:08x} 10.0.{}.{} 203.0.113.{} {} 443 6 {} {} 1714521600 1714521660 ACCEPT OK\n", i % 250, i % 200, i % 100, 1024 + i % 5000, i % 90, i * 7 % 100_000))
            .collect();
        assert!(lines.len() > 4 << 20);
        assert_eq!(decompress("k", gz_best(lines.as_bytes()), Limits::default()).expect("log text").len(), lines.len());
    }
}
