//! The bytes the generators write: JSON strings, numbers, AWS timestamps and the random
//! identifiers AWS uses (UUIDs, hex and alphanumeric IDs), appended to a `Vec<u8>`.
//!
//! Records are written straight as text rather than built as `serde_json::Value` trees: a
//! million-event archive must generate in seconds, and the exact field order AWS uses is part of
//! what the generator promises.

use chrono::{DateTime, Datelike, Timelike};
use rand::Rng;

const HEX: &[u8; 16] = b"0123456789abcdef";
const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const UPPER_ALNUM: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER_ALNUM: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Which characters a random identifier is drawn from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Alphabet {
    /// `0-9a-f`, as in `eni-`, `vpc-` and `fl-` IDs.
    Hex,
    /// `0-9A-Za-z`, as in the suffix of CloudTrail file names.
    Alnum,
    /// `0-9A-Z`, as in access key IDs and S3 request IDs.
    UpperAlnum,
    /// `0-9a-z`, as in organization IDs.
    LowerAlnum,
}

impl Alphabet {
    const fn chars(self) -> &'static [u8] {
        match self {
            Alphabet::Hex => HEX,
            Alphabet::Alnum => ALNUM,
            Alphabet::UpperAlnum => UPPER_ALNUM,
            Alphabet::LowerAlnum => LOWER_ALNUM,
        }
    }
}

/// `len` random characters from `alphabet`.
pub(crate) fn random_id<R: Rng + ?Sized>(rng: &mut R, alphabet: Alphabet, len: usize) -> String {
    let chars = alphabet.chars();
    (0..len).map(|_| char::from(chars[rng.random_range(0..chars.len())])).collect()
}

/// Appends a lowercase version-4 UUID.
pub(crate) fn push_uuid<R: Rng + ?Sized>(out: &mut Vec<u8>, rng: &mut R) {
    let mut bytes: [u8; 16] = rng.random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

/// A lowercase version-4 UUID as a `String`.
pub(crate) fn uuid<R: Rng + ?Sized>(rng: &mut R) -> String {
    let mut out = Vec::with_capacity(36);
    push_uuid(&mut out, rng);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends `s` as a JSON string literal, escaping what JSON requires.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Appends `"name":` followed by `value` as a JSON string.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    push_json_str(out, value);
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_2(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

fn push_4(out: &mut Vec<u8>, n: i32) {
    let n = n.unsigned_abs();
    push_2(out, n / 100);
    push_2(out, n % 100);
}

/// The UTC date and time of a Unix timestamp; timestamps outside chrono's range become the epoch
/// (configs are validated long before that could happen).
fn civil(secs: i64) -> chrono::NaiveDateTime {
    DateTime::from_timestamp(secs, 0).unwrap_or_default().naive_utc()
}

/// Appends `YYYY-MM-DDTHH:MM:SSZ`, the form of `eventTime` and `query_timestamp`.
pub(crate) fn push_iso(out: &mut Vec<u8>, secs: i64) {
    let t = civil(secs);
    push_4(out, t.year());
    out.push(b'-');
    push_2(out, t.month());
    out.push(b'-');
    push_2(out, t.day());
    out.push(b'T');
    push_2(out, t.hour());
    out.push(b':');
    push_2(out, t.minute());
    out.push(b':');
    push_2(out, t.second());
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SSZ` as a `String`.
pub(crate) fn iso(secs: i64) -> String {
    let mut out = Vec::with_capacity(20);
    push_iso(&mut out, secs);
    String::from_utf8_lossy(&out).into_owned()
}

/// `YYYY/MM/DD`, the date folders of every AWS log key.
pub(crate) fn key_date(secs: i64) -> String {
    let t = civil(secs);
    format!("{:04}/{:02}/{:02}", t.year(), t.month(), t.day())
}

/// `YYYYMMDDTHHMMZ`, the delivery stamp in CloudTrail, flow log and DNS log file names.
pub(crate) fn key_minute(secs: i64) -> String {
    let t = civil(secs);
    format!("{:04}{:02}{:02}T{:02}{:02}Z", t.year(), t.month(), t.day(), t.hour(), t.minute())
}

/// `YYYYMMDDTHHMMSSZ`, the stamp in CloudTrail digest and AWS Config file names.
pub(crate) fn key_second(secs: i64) -> String {
    let t = civil(secs);
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
}

/// The `Jan 15, 2024, 11:23:45 AM` form STS uses for credential expiry in `responseElements`.
pub(crate) fn sts_expiration(secs: i64) -> String {
    civil(secs).format("%b %-d, %Y, %-I:%M:%S %p").to_string()
}

/// FNV-1a: a name maps to the same value everywhere in the archive, and no generator state is
/// consumed.
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_the_aws_shapes() {
        // 2024-02-29T23:59:07Z, a leap day, to catch month/day slips.
        let t = 1_709_251_147;
        assert_eq!(iso(t), "2024-02-29T23:59:07Z");
        assert_eq!(key_date(t), "2024/02/29");
        assert_eq!(key_minute(t), "20240229T2359Z");
        assert_eq!(key_second(t), "20240229T235907Z");
        assert_eq!(sts_expiration(t), "Feb 29, 2024, 11:59:07 PM");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\\c\n\u{1}");
        assert_eq!(out, br#""a\"b\\c\n\u0001""#);
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        push_u64(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"018446744073709551615");
    }
}
