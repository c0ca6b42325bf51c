//! The hand-written fast path of `parse_rfc3339_micros` against chrono's RFC 3339 parser, which it
//! must agree with on every string (CloudTrail `eventTime`, DNS `query_timestamp`).
#![no_main]

use bunker_ingest::timestamp::{micros_to_days, parse_rfc3339_micros};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ours = parse_rfc3339_micros(text);
    let chrono = chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_micros());
    assert_eq!(ours, chrono, "{text:?}");
    if let Some(micros) = ours {
        let _ = micros_to_days(micros);
    }
});
