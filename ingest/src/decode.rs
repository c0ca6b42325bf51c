//! Turning the stored bytes of an object into the log text: gunzip when the bytes are gzip
//! (every member of a multi-member stream, as CloudTrail and Firehose write them), pass-through
//! otherwise, with a cap on the decompressed size so that a gzip bomb is an error, not an outage.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::{IngestError, Result};

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Default cap on the decompressed size of one object: real CloudTrail, flow and DNS files are at
/// most tens of MB, and the cap bounds what one hostile object can make the ingest hold in memory.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 256 << 20;

/// Whether the bytes start like a gzip stream.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// The object's content, decompressed if it is gzip, at most `limit_bytes` long.
///
/// `key` only names the object in errors.
pub fn decompress(key: &str, data: Vec<u8>, limit_bytes: u64) -> Result<Vec<u8>> {
    if !is_gzip(&data) {
        if data.len() as u64 > limit_bytes {
            return Err(IngestError::TooLarge { key: key.to_owned(), limit_bytes });
        }
        return Ok(data);
    }
    let mut out = Vec::with_capacity(initial_capacity(&data, limit_bytes));
    let mut decoder = MultiGzDecoder::new(data.as_slice()).take(limit_bytes + 1);
    decoder.read_to_end(&mut out).map_err(|e| IngestError::Gzip {
        key: key.to_owned(),
        reason: match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "truncated gzip stream (unexpected end of data)".to_owned(),
            _ => e.to_string(),
        },
    })?;
    if out.len() as u64 > limit_bytes {
        return Err(IngestError::TooLarge { key: key.to_owned(), limit_bytes });
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

    #[test]
    fn plain_and_gzip_and_multi_member() {
        assert_eq!(decompress("k", b"plain text".to_vec(), 100).expect("plain"), b"plain text");
        assert_eq!(decompress("k", gz(b"hello"), 100).expect("gz"), b"hello");
        let mut two = gz(b"first,");
        two.extend(gz(b"second"));
        assert_eq!(decompress("k", two, 100).expect("multi"), b"first,second");
        assert_eq!(decompress("k", Vec::new(), 100).expect("empty"), b"");
    }

    #[test]
    fn broken_gzip_is_an_error_naming_the_object() {
        let whole = gz(&b"x".repeat(10_000));
        let truncated = whole[..whole.len() / 2].to_vec();
        let err = decompress("AWSLogs/a.json.gz", truncated, 1 << 20).expect_err("truncated");
        assert!(matches!(err, IngestError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("AWSLogs/a.json.gz") && err.to_string().contains("truncated"), "{err}");

        let mut corrupt = whole.clone();
        for b in corrupt.iter_mut().skip(12).take(20) {
            *b ^= 0x5a;
        }
        let err = decompress("k", corrupt, 1 << 20).expect_err("corrupt");
        assert!(matches!(err, IngestError::Gzip { .. }), "{err}");

        // Only the magic bytes: a header cut short.
        let err = decompress("k", GZIP_MAGIC.to_vec(), 1 << 20).expect_err("header only");
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
        let err = decompress("bomb.gz", bomb, 1000).expect_err("bomb");
        assert!(matches!(err, IngestError::TooLarge { limit_bytes: 1000, .. }), "{err}");
        let err = decompress("big.txt", vec![b'a'; 2000], 1000).expect_err("plain too big");
        assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
    }
}
