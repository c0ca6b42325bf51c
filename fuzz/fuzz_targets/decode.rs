//! Stored bytes through `decode::decompress` (gunzip with size and ratio caps), then content sniffing, as
//! `process_object` does for an object whose key does not say what it holds. Gzip that decodes is
//! checked against flate2's streaming decoder: libdeflate's fast path must give the same bytes.
#![no_main]

use std::io::Read;

use bunker_ingest::IngestError;
use bunker_ingest::classify::sniff;
use bunker_ingest::decode::{Limits, decompress, is_gzip};
use libfuzzer_sys::fuzz_target;

/// Small, so that a bomb is found quickly and the fuzzer stays inside its memory limit.
const CAP_BYTES: u64 = 2 << 20;
/// Low, so that inputs of a few KB reach the ratio cap (it counts past the first MiB).
const MAX_RATIO: u64 = 100;
const LIMITS: Limits = Limits { max_bytes: CAP_BYTES, max_ratio: MAX_RATIO };

const KEY: &str = "exports/2024/05/01/object.gz";

fuzz_target!(|data: &[u8]| {
    match decompress(KEY, data.to_vec(), LIMITS) {
        Ok(content) => {
            assert!(content.len() as u64 <= CAP_BYTES, "{} bytes out of a cap of {CAP_BYTES}", content.len());
            if !is_gzip(data) {
                assert_eq!(content, data, "bytes that are not gzip pass through unchanged");
            } else {
                let mut reference = Vec::new();
                let streamed = flate2::read::MultiGzDecoder::new(data).take(CAP_BYTES + 1).read_to_end(&mut reference);
                if streamed.is_ok() {
                    assert_eq!(content, reference, "libdeflate and the streaming decoder disagree");
                }
            }
            let _ = sniff(&content);
        }
        Err(IngestError::Gzip { key, reason }) => {
            assert!(is_gzip(data), "a gzip error for bytes that are not gzip");
            assert_eq!(key, KEY);
            assert!(!reason.is_empty());
        }
        Err(IngestError::TooLarge { key, limit_bytes }) => {
            assert_eq!((key.as_str(), limit_bytes), (KEY, CAP_BYTES));
            assert!(is_gzip(data) || data.len() as u64 > CAP_BYTES);
        }
        Err(IngestError::TooCompressed { key, stored_bytes, max_ratio }) => {
            assert_eq!((key.as_str(), stored_bytes, max_ratio), (KEY, data.len() as u64, MAX_RATIO));
            assert!(is_gzip(data) && stored_bytes * MAX_RATIO < CAP_BYTES, "a ratio error where the size cap applies");
        }
        Err(other) => panic!("decompress failed with an error that is not bad input: {other}"),
    }
});
