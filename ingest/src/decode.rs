//! Turning the stored bytes of an object into the log text: gunzip when the bytes are gzip
//! (every member of a multi-member stream, as CloudTrail and Firehose write them), pass-through
//! otherwise, with caps on the decompressed size and on the compression ratio so that a gzip bomb
//! is an error, not an outage.
//!
//! Gzip goes through libdeflate first: whole-buffer inflation, member by member, about twice as
//! fast as a streaming inflater here (and gunzip is a fifth of an ingest's CPU). Anything it
//! refuses — corrupt, truncated, trailing bytes — is decoded again by flate2's streaming
//! `MultiGzDecoder`, which accepts exactly what it always accepted and names what is wrong.

use std::cell::RefCell;
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
    decompress_into(key, data, limits, Vec::new())
}

/// [`decompress`], inflating into `spare`'s allocation (cleared first) rather than a new one: a
/// parser thread hands back the buffer of its last object, so the pages of a large object's text
/// are not mapped, faulted in and unmapped again object after object. Content that is not gzip is
/// returned in `data` itself, and `spare` is dropped.
pub fn decompress_into(key: &str, data: Vec<u8>, limits: Limits, spare: Vec<u8>) -> Result<Vec<u8>> {
    let limit_bytes = limits.max_bytes;
    if !is_gzip(&data) {
        if data.len() as u64 > limit_bytes {
            return Err(IngestError::TooLarge { key: key.to_owned(), limit_bytes });
        }
        return Ok(data);
    }
    let stored_bytes = data.len() as u64;
    let allowed = limits.allowed(stored_bytes);
    let over_limit = || {
        if allowed == limit_bytes {
            IngestError::TooLarge { key: key.to_owned(), limit_bytes }
        } else {
            IngestError::TooCompressed { key: key.to_owned(), stored_bytes, max_ratio: limits.max_ratio }
        }
    };
    // A spare too small is dropped, not grown: growing it would copy its stale bytes.
    let room = initial_capacity(&data, allowed);
    let mut out = if spare.capacity() >= room { spare } else { Vec::with_capacity(room) };
    out.clear();
    match inflate_members(&data, allowed, out) {
        Inflated::Whole(out) => Ok(out),
        Inflated::OverLimit => Err(over_limit()),
        Inflated::Refused(mut out) => {
            out.clear();
            stream(key, &data, allowed, &mut out)?;
            if out.len() as u64 > allowed {
                return Err(over_limit());
            }
            Ok(out)
        }
    }
}

/// Gunzips with flate2's streaming decoder, reading at most one byte past `allowed` (so a bomb
/// costs at most that much memory and time), with the reason of any failure.
fn stream(key: &str, data: &[u8], allowed: u64, out: &mut Vec<u8>) -> Result<()> {
    let mut decoder = MultiGzDecoder::new(data).take(allowed + 1);
    decoder.read_to_end(out).map_err(|e| IngestError::Gzip {
        key: key.to_owned(),
        reason: match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "truncated gzip stream (unexpected end of data)".to_owned(),
            _ => e.to_string(),
        },
    })?;
    Ok(())
}

/// What libdeflate made of a gzip object.
enum Inflated {
    /// Every member, concatenated.
    Whole(Vec<u8>),
    /// The content is longer than allowed.
    OverLimit,
    /// Not well-formed gzip as libdeflate reads it (or no decompressor): the streaming decoder
    /// decides. The buffer is handed back for it.
    Refused(Vec<u8>),
}

/// Room given to a member whose size nothing hints at, before it is doubled.
const MIN_MEMBER_ROOM: usize = 64 << 10;

thread_local! {
    // One decompressor per thread, reused across objects (it holds ~10 KB of tables).
    static INFLATER: RefCell<Option<libdeflate::Inflater>> = const { RefCell::new(None) };
}

/// Inflates every gzip member of `data` with libdeflate into `out` (empty, with the room the
/// trailer hints reserved), at most `allowed` bytes.
///
/// libdeflate needs room for a member's whole output up front. The room starts at the size the
/// trailer hints (exact for one-member files, the common case) and doubles when a member needs
/// more, inflating that member again: at most twice the work, and never past `allowed`.
fn inflate_members(data: &[u8], allowed: u64, mut out: Vec<u8>) -> Inflated {
    INFLATER.with_borrow_mut(|slot| {
        let inflater = match slot {
            Some(inflater) => inflater,
            None => match libdeflate::Inflater::new() {
                Some(inflater) => slot.insert(inflater),
                None => return Inflated::Refused(out),
            },
        };
        let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
        let mut rest = data;
        while !rest.is_empty() {
            let left = allowed - out.len();
            // The room reserved from the trailer's hint when it is there (growing it would copy);
            // otherwise a start that doubles.
            let spare = out.capacity() - out.len();
            let mut room = (if spare >= MIN_MEMBER_ROOM / 16 { spare } else { MIN_MEMBER_ROOM }).min(left);
            loop {
                match inflater.member(rest, &mut out, room) {
                    Ok(consumed) if consumed > 0 => {
                        rest = &rest[consumed..];
                        break;
                    }
                    Ok(_) | Err(libdeflate::Failure::Bad) => return Inflated::Refused(out),
                    Err(libdeflate::Failure::NoRoom) if room < left => room = room.saturating_mul(2).min(left),
                    Err(libdeflate::Failure::NoRoom) => return Inflated::OverLimit,
                }
            }
        }
        Inflated::Whole(out)
    })
}

/// The one place bunker calls C: libdeflate's gzip decompressor, which is the only API that
/// reports how much input a member consumed (the safe `libdeflater` wrapper does not, so it
/// cannot read multi-member files).
#[allow(unsafe_code)]
mod libdeflate {
    use std::ptr::NonNull;

    use libdeflate_sys as sys;

    /// Why a member did not inflate.
    pub(super) enum Failure {
        /// Its content is longer than the room given.
        NoRoom,
        /// Not valid gzip (corrupt, truncated, a bad checksum or size).
        Bad,
    }

    /// An owned libdeflate decompressor.
    pub(super) struct Inflater(NonNull<sys::libdeflate_decompressor>);

    // SAFETY: a decompressor is plain memory with no tie to the thread that made it, and it is
    // only ever used through `&mut self`.
    unsafe impl Send for Inflater {}

    impl Inflater {
        /// A new decompressor; `None` if libdeflate could not allocate one.
        pub(super) fn new() -> Option<Inflater> {
            // SAFETY: no preconditions; it returns NULL when out of memory.
            NonNull::new(unsafe { sys::libdeflate_alloc_decompressor() }).map(Inflater)
        }

        /// Inflates the gzip member at the start of `input`, appending at most `room` bytes to
        /// `out`; returns how many bytes of `input` the member took. On failure `out` is as it was.
        pub(super) fn member(&mut self, input: &[u8], out: &mut Vec<u8>, room: usize) -> Result<usize, Failure> {
            out.reserve(room);
            let spare = out.spare_capacity_mut();
            let (mut consumed, mut written) = (0usize, 0usize);
            // SAFETY: `input` is readable for `input.len()` bytes and `spare` writable for at least
            // `room` bytes (reserved above); libdeflate writes no more than the room it is given
            // and reports how much it wrote and read through the two pointers.
            let result = unsafe {
                sys::libdeflate_gzip_decompress_ex(
                    self.0.as_ptr(),
                    input.as_ptr().cast(),
                    input.len(),
                    spare.as_mut_ptr().cast(),
                    room,
                    &mut consumed,
                    &mut written,
                )
            };
            match result {
                sys::libdeflate_result_LIBDEFLATE_SUCCESS if written <= room && consumed <= input.len() => {
                    // SAFETY: libdeflate initialised `written` bytes right after the old length.
                    unsafe { out.set_len(out.len() + written) };
                    Ok(consumed)
                }
                sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Err(Failure::NoRoom),
                _ => Err(Failure::Bad),
            }
        }
    }

    impl Drop for Inflater {
        fn drop(&mut self) {
            // SAFETY: the pointer came from `libdeflate_alloc_decompressor` and is freed once.
            unsafe { sys::libdeflate_free_decompressor(self.0.as_ptr()) }
        }
    }
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

    /// The spare buffer's allocation is what comes back, whatever it held before; the streaming
    /// decoder writes into it just the same, and the caps and errors are unchanged.
    #[test]
    fn content_is_inflated_into_the_spare_buffer() {
        let mut spare = Vec::with_capacity(1 << 20);
        spare.extend_from_slice(b"the last object's text");
        let at = spare.as_ptr();
        let out = decompress_into("k", gz(b"hello"), Limits::bytes(100), spare).expect("gz");
        assert_eq!((out.as_slice(), out.as_ptr()), (&b"hello"[..], at));

        let mut with_empty = gz(b"first,");
        with_empty.extend(gz(b""));
        with_empty.extend(gz(b"second"));
        let out = decompress_into("k", with_empty, Limits::bytes(100), out).expect("empty member");
        assert_eq!((out.as_slice(), out.as_ptr()), (&b"first,second"[..], at));
        // The streaming decoder, for what libdeflate refuses, writes into the same buffer.
        let mut out = out;
        out.clear();
        stream("k", &gz(b"streamed"), 100, &mut out).expect("stream");
        assert_eq!((out.as_slice(), out.as_ptr()), (&b"streamed"[..], at));

        let whole = gz(&b"x".repeat(10_000));
        let err = decompress_into("k", whole[..whole.len() / 2].to_vec(), Limits::default(), out).expect_err("cut");
        assert!(matches!(err, IngestError::Gzip { .. }), "{err}");
        let err = decompress_into("k", whole, Limits::bytes(100), Vec::with_capacity(1 << 20)).expect_err("cap");
        assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
        // Plain content is its own buffer.
        let plain = b"plain text".to_vec();
        let at = plain.as_ptr();
        let out = decompress_into("k", plain, Limits::bytes(100), Vec::with_capacity(64)).expect("plain");
        assert_eq!(out.as_ptr(), at);
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

    /// libdeflate inflates into room sized from the trailer, which for a multi-member object only
    /// tells the last member's size: a big first member must still come out whole, and the size
    /// cap must hold exactly at its boundary.
    #[test]
    fn members_bigger_than_the_trailer_hint_and_the_exact_cap() {
        let big: Vec<u8> = (0..3_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let mut two = gz(&big);
        two.extend(gz(b"tail"));
        // The fast path itself takes it (the room doubles), not the streaming fallback.
        assert!(
            matches!(inflate_members(&two, 1 << 30, Vec::new()), Inflated::Whole(ref out) if out.len() == big.len() + 4)
        );
        assert!(matches!(inflate_members(&two, big.len() as u64, Vec::new()), Inflated::OverLimit));
        let out = decompress("k", two.clone(), Limits::bytes(1 << 30)).expect("multi");
        assert_eq!(out.len(), big.len() + 4);
        assert!(out.starts_with(&big) && out.ends_with(b"tail"));

        let exact = big.len() as u64 + 4;
        assert_eq!(decompress("k", two.clone(), Limits::bytes(exact)).expect("exactly at the cap").len(), out.len());
        let err = decompress("k", two, Limits::bytes(exact - 1)).expect_err("one byte over");
        assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
    }

    /// What libdeflate refuses goes to the streaming decoder, which decides as it always did: an
    /// empty member in the middle is fine, garbage after the last member is named.
    #[test]
    fn odd_but_valid_and_trailing_bytes_decide_as_the_streaming_decoder_does() {
        let mut with_empty = gz(b"first,");
        with_empty.extend(gz(b""));
        with_empty.extend(gz(b"second"));
        assert_eq!(decompress("k", with_empty, Limits::bytes(100)).expect("empty member"), b"first,second");

        let mut trailing = gz(b"data");
        trailing.extend(b"not gzip at all");
        let fast = decompress("k", trailing.clone(), Limits::bytes(100));
        let mut reference = Vec::new();
        let streamed = MultiGzDecoder::new(trailing.as_slice()).read_to_end(&mut reference);
        match (fast, streamed) {
            (Ok(out), Ok(_)) => assert_eq!(out, reference),
            (Err(err), Err(_)) => assert!(matches!(err, IngestError::Gzip { .. }), "{err}"),
            (fast, streamed) => panic!("decoders disagree: {fast:?} vs {streamed:?}"),
        }

        // A wrong CRC32 in the trailer: libdeflate refuses it, and so does the streaming decoder.
        let mut bad_crc = gz(b"checked content");
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 0xff;
        let err = decompress("AWSLogs/crc.json.gz", bad_crc, Limits::bytes(100)).expect_err("bad crc");
        assert!(matches!(err, IngestError::Gzip { .. }) && err.to_string().contains("AWSLogs/crc.json.gz"), "{err}");
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
