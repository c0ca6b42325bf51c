//! SQS message bodies → the objects they announce.
//!
//! An archive bucket reaches the worker's queue in several ways, and a real deployment often mixes
//! them: S3 event notifications sent straight to SQS, the same wrapped in an SNS envelope (fan-out
//! to several consumers), EventBridge "Object Created" events, and CloudTrail's own SNS
//! notification (`s3Bucket` + `s3ObjectKey`). S3 also sends an `s3:TestEvent` when a notification
//! is configured, and every non-create event (deletes, restores, lifecycle) a broad configuration
//! subscribes to.
//!
//! [`parse_notification`] answers one of three things: these objects were created; this message
//! needs no work (and why); or this body is none of the known shapes (an error with the reason,
//! which the worker records before acknowledging the message, so it neither vanishes without a
//! trace nor comes back forever).
//!
//! Key encoding differs by path: S3 event notifications URL-encode the key with `+` for a space;
//! EventBridge events and CloudTrail's notification carry the key as it is.

use serde_json::Value;

use crate::classify::{ObjectRef, normalized_etag};

/// The largest body SQS accepts; anything longer did not come from SQS and is refused unread.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How deep SNS envelopes may nest (SNS → SNS happens with cross-account fan-out; more is abuse).
const MAX_ENVELOPES: usize = 3;

/// What a message asks of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// These objects were created; ingest them. Never empty.
    Objects(Vec<ObjectRef>),
    /// Nothing to ingest: a test event, or events other than object creation.
    Ignore {
        /// Why, for the log.
        reason: String,
    },
}

/// A message body that is none of the shapes a notification can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised notification: {reason}")]
pub struct NotificationError {
    /// What was wrong with it.
    pub reason: String,
}

fn unrecognised(reason: impl Into<String>) -> NotificationError {
    NotificationError { reason: reason.into() }
}

/// Reads one SQS message body.
pub fn parse_notification(body: &str) -> Result<Notification, NotificationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(unrecognised(format!("body of {} bytes is larger than SQS allows", body.len())));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| unrecognised(format!("not JSON: {e}")))?;
    parse_value(&value, 0)
}

fn parse_value(value: &Value, depth: usize) -> Result<Notification, NotificationError> {
    let Some(object) = value.as_object() else {
        return Err(unrecognised("not a JSON object"));
    };
    // SNS envelope: the real notification is the JSON text in `Message`.
    if object.get("Type").and_then(Value::as_str).is_some() && object.contains_key("TopicArn") {
        return sns_envelope(object, depth);
    }
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::Ignore { reason: "s3:TestEvent".into() });
    }
    if let Some(records) = object.get("Records") {
        return s3_event(records);
    }
    if object.get("source").and_then(Value::as_str) == Some("aws.s3") && object.contains_key("detail-type") {
        return eventbridge(object);
    }
    if object.contains_key("s3Bucket") || object.contains_key("s3ObjectKey") {
        return cloudtrail_notification(object);
    }
    Err(unrecognised("no Records, SNS Message, EventBridge detail or s3ObjectKey"))
}

fn sns_envelope(object: &serde_json::Map<String, Value>, depth: usize) -> Result<Notification, NotificationError> {
    let kind = object.get("Type").and_then(Value::as_str).unwrap_or_default();
    if kind != "Notification" {
        // SubscriptionConfirmation / UnsubscribeConfirmation reach a queue subscribed to a topic.
        return Ok(Notification::Ignore { reason: format!("SNS {kind} message") });
    }
    if depth >= MAX_ENVELOPES {
        return Err(unrecognised(format!("SNS envelopes nested more than {MAX_ENVELOPES} deep")));
    }
    let message = object
        .get("Message")
        .and_then(Value::as_str)
        .ok_or_else(|| unrecognised("SNS notification without a Message string"))?;
    let inner: Value =
        serde_json::from_str(message).map_err(|e| unrecognised(format!("SNS Message is not JSON: {e}")))?;
    parse_value(&inner, depth + 1)
}

/// An S3 event notification: `{"Records":[{"eventSource":"aws:s3","eventName":..,"s3":{..}}]}`.
fn s3_event(records: &Value) -> Result<Notification, NotificationError> {
    let records = records.as_array().ok_or_else(|| unrecognised("Records is not a list"))?;
    let mut objects = Vec::new();
    let mut ignored = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let source = record.get("eventSource").and_then(Value::as_str).unwrap_or_default();
        if source != "aws:s3" {
            return Err(unrecognised(format!("Records[{i}] has eventSource {source:?}, not aws:s3")));
        }
        let name = record.get("eventName").and_then(Value::as_str).unwrap_or_default();
        // Notifications say `ObjectCreated:Put`; the configuration's `s3:` prefix appears in some.
        if !name.trim_start_matches("s3:").starts_with("ObjectCreated:") {
            ignored.push(name.to_owned());
            continue;
        }
        let s3 = record.get("s3").ok_or_else(|| unrecognised(format!("Records[{i}] has no s3 entry")))?;
        let bucket = string_at(s3, &["bucket", "name"])
            .ok_or_else(|| unrecognised(format!("Records[{i}] has no bucket name")))?;
        let raw_key =
            string_at(s3, &["object", "key"]).ok_or_else(|| unrecognised(format!("Records[{i}] has no object key")))?;
        let key = decode_event_key(raw_key).ok_or_else(|| {
            unrecognised(format!("Records[{i}] key {:?} is not valid URL-encoded UTF-8", quoted(raw_key)))
        })?;
        let size = s3.pointer("/object/size").and_then(Value::as_u64).unwrap_or(0);
        let mut object = object_ref(bucket, key, size)?;
        object.etag = s3.pointer("/object/eTag").and_then(Value::as_str).map(|e| normalized_etag(e).to_owned());
        objects.push(object);
    }
    if objects.is_empty() {
        let names = if ignored.is_empty() { "no records".to_owned() } else { ignored.join(", ") };
        return Ok(Notification::Ignore { reason: format!("not an object creation: {names}") });
    }
    Ok(Notification::Objects(objects))
}

/// An EventBridge event from S3: `{"source":"aws.s3","detail-type":"Object Created","detail":{..}}`.
fn eventbridge(object: &serde_json::Map<String, Value>) -> Result<Notification, NotificationError> {
    let kind = object.get("detail-type").and_then(Value::as_str).unwrap_or_default();
    if kind != "Object Created" {
        return Ok(Notification::Ignore { reason: format!("EventBridge {kind:?} event") });
    }
    let detail = object.get("detail").ok_or_else(|| unrecognised("EventBridge event without detail"))?;
    let bucket =
        string_at(detail, &["bucket", "name"]).ok_or_else(|| unrecognised("EventBridge event without bucket name"))?;
    let key =
        string_at(detail, &["object", "key"]).ok_or_else(|| unrecognised("EventBridge event without object key"))?;
    let size = detail.pointer("/object/size").and_then(Value::as_u64).unwrap_or(0);
    let mut object = object_ref(bucket, key.to_owned(), size)?;
    object.etag = detail.pointer("/object/etag").and_then(Value::as_str).map(|e| normalized_etag(e).to_owned());
    Ok(Notification::Objects(vec![object]))
}

/// CloudTrail's notification of delivered log files: `{"s3Bucket":..,"s3ObjectKey":[..]}`.
fn cloudtrail_notification(object: &serde_json::Map<String, Value>) -> Result<Notification, NotificationError> {
    let bucket = object
        .get("s3Bucket")
        .and_then(Value::as_str)
        .ok_or_else(|| unrecognised("CloudTrail notification without an s3Bucket string"))?;
    let keys = object
        .get("s3ObjectKey")
        .and_then(Value::as_array)
        .ok_or_else(|| unrecognised("CloudTrail notification without an s3ObjectKey list"))?;
    let mut objects = Vec::with_capacity(keys.len());
    for key in keys {
        let key = key.as_str().ok_or_else(|| unrecognised("s3ObjectKey holds something other than a string"))?;
        objects.push(object_ref(bucket, key.to_owned(), 0)?);
    }
    if objects.is_empty() {
        return Ok(Notification::Ignore { reason: "CloudTrail notification with no keys".into() });
    }
    Ok(Notification::Objects(objects))
}

fn string_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, k| v.get(*k))?.as_str()
}

/// The longest object key S3 stores, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// How much of a refused key or bucket name an error quotes.
const QUOTED_BYTES: usize = 120;

fn object_ref(bucket: &str, key: String, size: u64) -> Result<ObjectRef, NotificationError> {
    if bucket.is_empty() || key.is_empty() {
        return Err(unrecognised("empty bucket name or object key"));
    }
    // A name S3 could not have sent is forged: refuse it before it reaches a request URL.
    if !is_bucket_name(bucket) {
        return Err(unrecognised(format!("{:?} is not a valid S3 bucket name", quoted(bucket))));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(unrecognised(format!(
            "object key of {} bytes ({:?}...) is longer than S3 allows ({MAX_KEY_BYTES})",
            key.len(),
            quoted(&key)
        )));
    }
    Ok(ObjectRef::new(bucket, key, size))
}

/// S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit. (Older regions allowed uppercase and underscores in legacy names.)
fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// The start of `text`, cut at a character boundary.
fn quoted(text: &str) -> &str {
    let mut end = text.len().min(QUOTED_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Decodes a key as S3 event notifications write it: URL-encoded, with `+` for a space.
pub fn decode_event_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|k| k.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{read_sample, real_samples_dir};

    fn objects(body: &str) -> Vec<ObjectRef> {
        match parse_notification(body) {
            Ok(Notification::Objects(objects)) => objects,
            other => panic!("expected objects, got {other:?} for {body}"),
        }
    }

    fn ignored(body: &str) -> String {
        match parse_notification(body) {
            Ok(Notification::Ignore { reason }) => reason,
            other => panic!("expected ignore, got {other:?} for {body}"),
        }
    }

    fn refused(body: &str) -> String {
        match parse_notification(body) {
            Err(e) => e.reason,
            other => panic!("expected an error, got {other:?} for {body}"),
        }
    }

    /// An S3 event notification as S3 sends it to SQS (one record, keys URL-encoded).
    fn s3_event_body(event: &str, key: &str) -> String {
        format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
            "eventTime":"2025-03-03T10:00:00.123Z","eventName":"{event}",
            "userIdentity":{{"principalId":"AWS:AIDAEXAMPLE"}},
            "requestParameters":{{"sourceIPAddress":"10.0.0.1"}},
            "responseElements":{{"x-amz-request-id":"C3D13FE58DE4C810","x-amz-id-2":"FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"}},
            "s3":{{"s3SchemaVersion":"1.0","configurationId":"bunker",
                "bucket":{{"name":"org-log-archive","ownerIdentity":{{"principalId":"A3NL1KOZZKExample"}},"arn":"arn:aws:s3:::org-log-archive"}},
                "object":{{"key":"{key}","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"096fKKXTRTtl3on89fVO.nfljtsv6qko","sequencer":"0055AED6DCD90281E5"}}}}}}]}}"#
        )
    }

    #[test]
    fn s3_event_keys_are_url_decoded() {
        let body = s3_event_body(
            "ObjectCreated:Put",
            "AWSLogs/o-abc123/111122223333/CloudTrail/us-east-1/2025/03/03/111122223333_CloudTrail_us-east-1_20250303T1000Z_a+b%2Bc%3D.json.gz",
        );
        let got = objects(&body);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bucket, "org-log-archive");
        assert_eq!(
            got[0].key,
            "AWSLogs/o-abc123/111122223333/CloudTrail/us-east-1/2025/03/03/111122223333_CloudTrail_us-east-1_20250303T1000Z_a b+c=.json.gz"
        );
        assert_eq!(got[0].size, 1024);
        // Some emulators encode the slashes too.
        assert_eq!(objects(&s3_event_body("ObjectCreated:CompleteMultipartUpload", "a%2Fb.gz"))[0].key, "a/b.gz");
    }

    #[test]
    fn s3_event_in_an_sns_envelope() {
        let inner =
            s3_event_body("ObjectCreated:Put", "AWSLogs/111122223333/vpcflowlogs/us-east-1/2025/03/03/f.log.gz");
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:111122223333:log-archive-events",
            "Subject": "Amazon S3 Notification",
            "Message": inner,
            "Timestamp": "2025-03-03T10:00:01.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-example.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        });
        let got = objects(&envelope.to_string());
        assert_eq!(got[0].key, "AWSLogs/111122223333/vpcflowlogs/us-east-1/2025/03/03/f.log.gz");
    }

    #[test]
    fn eventbridge_object_created_keys_are_taken_as_they_are() {
        let event = serde_json::json!({
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "111122223333",
            "time": "2025-03-03T10:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:s3:::org-log-archive"],
            "detail": {
                "version": "0",
                "bucket": {"name": "org-log-archive"},
                "object": {"key": "AWSLogs/111122223333/vpcdnsquerylogs/vpc-0a1b/2025/03/03/a+b.log.gz", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "00617F08299329D189"},
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "delivery.logs.amazonaws.com",
                "reason": "PutObject"
            }
        });
        let got = objects(&event.to_string());
        assert_eq!(got[0].key, "AWSLogs/111122223333/vpcdnsquerylogs/vpc-0a1b/2025/03/03/a+b.log.gz");
        assert_eq!(got[0].size, 5);
        let mut deleted = event.clone();
        deleted["detail-type"] = "Object Deleted".into();
        assert!(ignored(&deleted.to_string()).contains("Object Deleted"));
    }

    #[test]
    fn cloudtrail_sns_notification_from_the_real_sample() {
        let body = read_sample(
            &real_samples_dir().join("aws-cloudtrail-processing-library/src/test/resources/resources/SQSMessageBody"),
        );
        let got = objects(std::str::from_utf8(&body).expect("utf-8"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bucket, "my-test-bucket");
        assert!(got[0].key.starts_with("myprefix/AWSLogs/123456789012/CloudTrail/us-east-1/2014/03/09/"));
        // The malformed sample spells `Messagess`: an SNS notification without a message.
        let bad = read_sample(
            &real_samples_dir()
                .join("aws-cloudtrail-processing-library/src/test/resources/resources/SQSMessageBodyWrongFormat"),
        );
        assert!(refused(std::str::from_utf8(&bad).expect("utf-8")).contains("without a Message"));
        // Delivered without SNS (raw message delivery).
        let raw =
            r#"{"s3Bucket":"org-log-archive","s3ObjectKey":["AWSLogs/1/CloudTrail/us-east-1/2025/03/03/x.json.gz"]}"#;
        assert_eq!(objects(raw)[0].key, "AWSLogs/1/CloudTrail/us-east-1/2025/03/03/x.json.gz");
    }

    #[test]
    fn test_events_and_non_create_events_are_ignored() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2025-03-03T10:00:00.000Z","Bucket":"org-log-archive","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;
        assert_eq!(ignored(test_event), "s3:TestEvent");
        assert!(ignored(&s3_event_body("ObjectRemoved:Delete", "k")).contains("ObjectRemoved:Delete"));
        assert!(ignored(&s3_event_body("LifecycleExpiration:Delete", "k")).contains("LifecycleExpiration"));
        let confirmation = r#"{"Type":"SubscriptionConfirmation","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"You have chosen to subscribe","SubscribeURL":"https://example"}"#;
        assert!(ignored(confirmation).contains("SubscriptionConfirmation"));
    }

    #[test]
    fn bodies_that_are_no_notification_are_refused_with_a_reason() {
        assert!(refused("").contains("not JSON"));
        assert!(refused("hello").contains("not JSON"));
        assert!(refused("[1,2]").contains("not a JSON object"));
        assert!(refused(r#"{"foo":1}"#).contains("no Records"));
        assert!(refused(r#"{"Records":"x"}"#).contains("not a list"));
        assert!(refused(r#"{"Records":[{"eventSource":"aws:sqs"}]}"#).contains("aws:sqs"));
        assert!(refused(r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put"}]}"#).contains("no s3"));
        assert!(refused(&s3_event_body("ObjectCreated:Put", "bad%FF%FE")).contains("not valid URL-encoded"));
        assert!(refused(&s3_event_body("ObjectCreated:Put", "")).contains("empty"));
        assert!(refused(r#"{"s3Bucket":"b","s3ObjectKey":[1]}"#).contains("other than a string"));
        assert!(refused(r#"{"Type":"Notification","TopicArn":"t","Message":"{not json"}"#).contains("not JSON"));
        // Envelopes within envelopes, without end.
        let mut body = s3_event_body("ObjectCreated:Put", "k");
        for _ in 0..5 {
            body = serde_json::json!({"Type":"Notification","TopicArn":"t","Message":body}).to_string();
        }
        assert!(refused(&body).contains("nested"));
        assert!(refused(&" ".repeat(MAX_BODY_BYTES + 1)).contains("larger than SQS allows"));
    }

    #[test]
    fn hostile_keys_and_bucket_names() {
        // `..`, an encoded slash and control characters are legal in S3 keys: they are read as the
        // literal key they are (S3 keys are not paths), never resolved.
        let keys = objects(&s3_event_body("ObjectCreated:Put", "AWSLogs/../../etc/passwd%2F..%2Fx%0A%1B%5B31m.gz"));
        assert_eq!(keys[0].key, "AWSLogs/../../etc/passwd/../x\n\u{1b}[31m.gz");
        // Longer than S3 allows: forged, refused with a short quote of the key.
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let reason = refused(&s3_event_body("ObjectCreated:Put", &long));
        assert!(reason.contains("1025 bytes") && reason.len() < 400, "{reason}");
        assert_eq!(
            objects(&s3_event_body("ObjectCreated:Put", &"k".repeat(MAX_KEY_BYTES)))[0].key.len(),
            MAX_KEY_BYTES
        );
        // Multi-byte characters are counted in bytes, and quoting never cuts one in half.
        let reason = refused(&format!(r#"{{"s3Bucket":"org-log-archive","s3ObjectKey":["{}"]}}"#, "é".repeat(600)));
        assert!(reason.contains("1200 bytes"), "{reason}");
        for bucket in ["b", "../archive", "archive/../x", "a..b", "-archive", "evil.example.com:443", &"b".repeat(64)] {
            let body = serde_json::json!({"s3Bucket": bucket, "s3ObjectKey": ["AWSLogs/x.json.gz"]}).to_string();
            assert!(refused(&body).contains("not a valid S3 bucket name"), "{bucket}");
        }
        for bucket in ["org-log-archive", "logs.example.com", "Legacy_Bucket_1"] {
            let body = serde_json::json!({"s3Bucket": bucket, "s3ObjectKey": ["AWSLogs/x.json.gz"]}).to_string();
            assert_eq!(objects(&body)[0].bucket, bucket);
        }
    }

    #[test]
    fn mixed_records_keep_only_the_creations() {
        let created = s3_event_body("ObjectCreated:Put", "a.gz");
        let mut value: Value = serde_json::from_str(&created).expect("json");
        let mut removed = value["Records"][0].clone();
        removed["eventName"] = "ObjectRemoved:Delete".into();
        value["Records"].as_array_mut().expect("list").push(removed);
        assert_eq!(objects(&value.to_string()).len(), 1);
    }
}
