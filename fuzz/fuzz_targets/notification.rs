//! SQS message bodies through `parse_notification`, then what the worker does with each object it
//! names before fetching it (folder-marker check, key classification).
#![no_main]

use bunker_ingest::classify::classify_key;
use bunker_ingest::notification::{MAX_BODY_BYTES, Notification, decode_event_key, parse_notification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SQS bodies are text: the worker only ever has a `String`.
    let Ok(body) = std::str::from_utf8(data) else { return };
    let outcome = parse_notification(body);
    match &outcome {
        Ok(Notification::Objects(objects)) => {
            assert!(body.len() <= MAX_BODY_BYTES);
            assert!(!objects.is_empty(), "Objects is never empty");
            for object in objects {
                assert!(!object.bucket.is_empty() && !object.key.is_empty(), "an object without bucket or key");
                let _ = object.is_folder_marker();
                let _ = object.id();
                let _ = classify_key(&object.key);
            }
        }
        Ok(Notification::Ignore { reason }) => assert!(!reason.is_empty(), "ignored without a reason"),
        Err(e) => assert!(!e.reason.is_empty(), "refused without a reason"),
    }
    assert_eq!(parse_notification(body), outcome, "the same body, read twice, says two things");
    // Keys in S3 events are URL-encoded; any text may come through there.
    let _ = decode_event_key(body);
});
