//! Tests of the CloudTrail parser: shapes, values, unknown fields, bad input, and the public samples.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use rand::{RngCore as _, SeedableRng as _};

use super::*;
use crate::test_support::{read_sample, real_samples_dir};

const KEY: &str =
    "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T1205Z_abc.json.gz";

fn ctx() -> ObjectContext<'static> {
    ObjectContext { bucket: "org-log-archive", key: KEY, key_date: None }
}

fn parse_bytes(parser: &mut CloudTrailParser, input: &[u8]) -> Result<Parsed> {
    let mut data = input.to_vec();
    parser.parse(&mut data, &ctx())
}

fn parse(input: &str) -> Parsed {
    let parsed = parse_bytes(&mut CloudTrailParser::new(), input.as_bytes()).expect("fixture parses");
    assert_eq!(parsed.batch.schema(), bunker_schemas::cloudtrail::schema());
    parsed
}

fn malformed_reason(input: &[u8]) -> String {
    match parse_bytes(&mut CloudTrailParser::new(), input) {
        Err(IngestError::Malformed { key, format, reason }) => {
            assert_eq!(key, KEY);
            assert_eq!(format, LogFormat::CloudTrail);
            reason
        }
        Err(other) => panic!("expected Malformed, got {other}"),
        Ok(parsed) => panic!("expected Malformed, got {} rows", parsed.batch.num_rows()),
    }
}

/// The column at a dotted path (`useridentity.sessioncontext.sessionissuer.arn`), with the nulls of
/// its parent structs applied, rendered as text.
fn column(batch: &RecordBatch, path: &str) -> Vec<Option<String>> {
    let mut parts = path.split('.');
    let first = parts.next().expect("path");
    let mut array: ArrayRef = batch.column_by_name(first).unwrap_or_else(|| panic!("no column {first}")).clone();
    let mut valid: Vec<bool> = (0..array.len()).map(|i| array.is_valid(i)).collect();
    for part in parts {
        let child =
            array.as_struct().column_by_name(part).unwrap_or_else(|| panic!("no field {part} in {path}")).clone();
        valid.iter_mut().enumerate().for_each(|(i, v)| *v = *v && child.is_valid(i));
        array = child;
    }
    let text = match array.data_type() {
        DataType::Timestamp(..) => {
            let times = array.as_primitive::<TimestampMicrosecondType>();
            (0..array.len())
                .map(|i| {
                    chrono::DateTime::from_timestamp_micros(times.value(i)).map(|t| t.to_rfc3339()).unwrap_or_default()
                })
                .collect::<Vec<_>>()
        }
        _ => {
            let cast = arrow::compute::cast(&array, &DataType::Utf8).expect("castable to text");
            let strings = cast.as_string::<i32>();
            (0..array.len()).map(|i| strings.value(i).to_owned()).collect()
        }
    };
    text.into_iter().zip(valid).map(|(t, v)| v.then_some(t)).collect()
}

fn one(batch: &RecordBatch, path: &str) -> Option<String> {
    let values = column(batch, path);
    assert_eq!(values.len(), 1, "{path}");
    values.into_iter().next().flatten()
}

/// The `additionalfields` JSON of each row, parsed.
fn additional(batch: &RecordBatch) -> Vec<Option<serde_json::Value>> {
    column(batch, "additionalfields")
        .into_iter()
        .map(|t| t.map(|t| serde_json::from_str(&t).expect("additionalfields is JSON")))
        .collect()
}

/// A delivered log file: an assumed-role data call and an IAM user's failed console sign-in.
const TWO_RECORDS: &str = r#"{
  "Records": [
    {
      "eventVersion": "1.09",
      "userIdentity": {
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLEID:deploy-bot",
        "arn": "arn:aws:sts::111122223333:assumed-role/Deployer/deploy-bot",
        "accountId": "111122223333",
        "accessKeyId": "ASIAEXAMPLEKEY",
        "sessionContext": {
          "sessionIssuer": {
            "type": "Role",
            "principalId": "AROAEXAMPLEID",
            "arn": "arn:aws:iam::111122223333:role/Deployer",
            "accountId": "111122223333",
            "userName": "Deployer"
          },
          "attributes": {"creationDate": "2024-05-01T11:58:02Z", "mfaAuthenticated": "false"},
          "ec2RoleDelivery": "2.0"
        }
      },
      "eventTime": "2024-05-01T12:03:44Z",
      "eventSource": "s3.amazonaws.com",
      "eventName": "GetObject",
      "awsRegion": "us-east-1",
      "sourceIPAddress": "198.51.100.23",
      "userAgent": "aws-sdk-go-v2/1.25.0",
      "requestParameters": {"bucketName": "payroll-exports", "key": "2024/04/run.csv", "Host": "payroll-exports.s3.amazonaws.com"},
      "responseElements": null,
      "additionalEventData": {"bytesTransferredOut": 48213, "x-amz-id-2": "tQ=="},
      "requestID": "8W3YFZ0EXAMPLE",
      "eventID": "6f1c7b4e-0000-4000-8000-000000000001",
      "readOnly": true,
      "resources": [
        {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::payroll-exports/2024/04/run.csv"},
        {"accountId": "111122223333", "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::payroll-exports"}
      ],
      "eventType": "AwsApiCall",
      "managementEvent": false,
      "recipientAccountId": "111122223333",
      "eventCategory": "Data",
      "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "payroll-exports.s3.amazonaws.com"}
    },
    {
      "eventVersion": "1.08",
      "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLEUSER", "arn": "arn:aws:iam::111122223333:user/mallory", "accountId": "111122223333", "userName": "mallory"},
      "eventTime": "2024-05-01T23:59:59Z",
      "eventSource": "signin.amazonaws.com",
      "eventName": "ConsoleLogin",
      "awsRegion": "us-east-1",
      "sourceIPAddress": "203.0.113.9",
      "userAgent": "Mozilla/5.0 \"quoted\"",
      "errorMessage": "Failed authentication",
      "requestParameters": null,
      "responseElements": {"ConsoleLogin": "Failure"},
      "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/", "MobileVersion": "No", "MFAUsed": "No"},
      "eventID": "6f1c7b4e-0000-4000-8000-000000000002",
      "readOnly": "false",
      "eventType": "AwsConsoleSignIn",
      "managementEvent": true,
      "recipientAccountId": "111122223333",
      "eventCategory": "Management",
      "sessionCredentialFromConsole": "true"
    }
  ]
}"#;

#[test]
fn batch_matches_the_table_schema_and_holds_the_values() {
    let parsed = parse(TWO_RECORDS);
    let batch = &parsed.batch;
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    assert_eq!(batch.num_rows(), 2);
    let s = |v: &str| Some(v.to_owned());
    let cases: &[(&str, [Option<String>; 2])] = &[
        ("eventversion", [s("1.09"), s("1.08")]),
        ("eventtime", [s("2024-05-01T12:03:44+00:00"), s("2024-05-01T23:59:59+00:00")]),
        ("date", [s("2024-05-01"), s("2024-05-01")]),
        ("useridentity.type", [s("AssumedRole"), s("IAMUser")]),
        (
            "useridentity.arn",
            [
                s("arn:aws:sts::111122223333:assumed-role/Deployer/deploy-bot"),
                s("arn:aws:iam::111122223333:user/mallory"),
            ],
        ),
        ("useridentity.username", [None, s("mallory")]),
        ("useridentity.sessioncontext.sessionissuer.arn", [s("arn:aws:iam::111122223333:role/Deployer"), None]),
        ("useridentity.sessioncontext.attributes.mfaauthenticated", [s("false"), None]),
        ("useridentity.sessioncontext.attributes.creationdate", [s("2024-05-01T11:58:02+00:00"), None]),
        ("useridentity.sessioncontext.ec2roledelivery", [s("2.0"), None]),
        ("useridentity.onbehalfof.userid", [None, None]),
        ("eventname", [s("GetObject"), s("ConsoleLogin")]),
        ("sourceipaddress", [s("198.51.100.23"), s("203.0.113.9")]),
        ("useragent", [s("aws-sdk-go-v2/1.25.0"), s("Mozilla/5.0 \"quoted\"")]),
        ("errorcode", [None, None]),
        ("errormessage", [None, s("Failed authentication")]),
        (
            "requestparameters",
            [
                s(
                    r#"{"bucketName":"payroll-exports","key":"2024/04/run.csv","Host":"payroll-exports.s3.amazonaws.com"}"#,
                ),
                None,
            ],
        ),
        ("responseelements", [None, s(r#"{"ConsoleLogin":"Failure"}"#)]),
        (
            "additionaleventdata",
            [
                s(r#"{"bytesTransferredOut":48213,"x-amz-id-2":"tQ=="}"#),
                s(r#"{"LoginTo":"https://console.aws.amazon.com/","MobileVersion":"No","MFAUsed":"No"}"#),
            ],
        ),
        ("requestid", [s("8W3YFZ0EXAMPLE"), None]),
        ("eventid", [s("6f1c7b4e-0000-4000-8000-000000000001"), s("6f1c7b4e-0000-4000-8000-000000000002")]),
        ("readonly", [s("true"), s("false")]),
        ("managementevent", [s("false"), s("true")]),
        ("sessioncredentialfromconsole", [None, s("true")]),
        ("recipientaccountid", [s("111122223333"), s("111122223333")]),
        ("eventcategory", [s("Data"), s("Management")]),
        ("tlsdetails.tlsversion", [s("TLSv1.3"), None]),
        ("tlsdetails.clientprovidedhostheader", [s("payroll-exports.s3.amazonaws.com"), None]),
        ("addendum.reason", [None, None]),
        ("additionalfields", [None, None]),
        ("source_bucket", [s("org-log-archive"), s("org-log-archive")]),
        ("source_key", [s(KEY), s(KEY)]),
    ];
    for (path, expected) in cases {
        assert_eq!(column(batch, path), expected.to_vec(), "{path}");
    }
    // A struct that is absent is null, not an empty struct.
    assert!(batch.column_by_name("tlsdetails").expect("tlsdetails").is_null(1));

    let resources = batch.column_by_name("resources").expect("resources").as_list::<i32>();
    assert!(resources.is_null(1));
    let first = resources.value(0);
    let items = first.as_struct();
    let text = |name: &str| column(&RecordBatch::from(items.clone()), name);
    assert_eq!(text("arn"), [s("arn:aws:s3:::payroll-exports/2024/04/run.csv"), s("arn:aws:s3:::payroll-exports")]);
    assert_eq!(text("accountid"), [None, s("111122223333")]);
    assert_eq!(text("type"), [s("AWS::S3::Object"), s("AWS::S3::Bucket")]);
}

#[test]
fn accepted_shapes() {
    let event = |name: &str, time: &str| {
        format!(
            r#"{{"eventVersion":"1.08","eventTime":"{time}","eventName":"{name}","recipientAccountId":"111122223333"}}"#
        )
    };
    let a = event("ListBuckets", "2024-05-01T00:00:01Z");
    let b = event("GetCallerIdentity", "2024-05-01T00:00:02Z");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("compact Records", format!(r#"{{"Records":[{a},{b}]}}"#), vec!["ListBuckets", "GetCallerIdentity"]),
        (
            "Records with other root fields",
            format!(r#"{{"NextToken":"x","Records":[{a}],"count":1}}"#),
            vec!["ListBuckets"],
        ),
        (
            "pretty Records",
            format!("{{\n  \"Records\": [\n    {a},\n    {b}\n  ]\n}}\n"),
            vec!["ListBuckets", "GetCallerIdentity"],
        ),
        ("empty Records", r#"{"Records":[]}"#.to_owned(), vec![]),
        ("a single event", a.clone(), vec!["ListBuckets"]),
        (
            "a single pretty event",
            "{\n \"eventTime\": \"2024-05-01T00:00:01Z\",\n \"eventName\": \"ListBuckets\"\n}".to_owned(),
            vec!["ListBuckets"],
        ),
        ("JSON lines", format!("{a}\n{b}\n"), vec!["ListBuckets", "GetCallerIdentity"]),
        (
            "JSON lines with CRLF and blank lines",
            format!("{a}\r\n\r\n{b}\r\n"),
            vec!["ListBuckets", "GetCallerIdentity"],
        ),
        (
            "JSON lines of Records files",
            format!("{{\"Records\":[{a}]}}\n{{\"Records\":[{b}]}}"),
            vec!["ListBuckets", "GetCallerIdentity"],
        ),
        ("byte-order mark", format!("\u{feff}{{\"Records\":[{a}]}}"), vec!["ListBuckets"]),
        ("surrounding whitespace", format!("\n\n  {a}  \n\n"), vec!["ListBuckets"]),
    ];
    for (name, input, expected) in cases {
        let parsed = parse(&input);
        assert!(parsed.rejected.is_empty(), "{name}: {:?}", parsed.rejected);
        let names: Vec<Option<String>> = expected.iter().map(|n| Some((*n).to_owned())).collect();
        assert_eq!(column(&parsed.batch, "eventname"), names, "{name}");
    }
}

#[test]
fn shipper_timestamp_stands_in_for_event_time() {
    let cases = [
        // Only @timestamp: it is the event time, and not an unknown field.
        (
            r#"{"@timestamp":"2020-09-14T00:44:23.000Z","@version":"1","eventName":"ListBuckets"}"#,
            "2020-09-14T00:44:23+00:00",
            Some(r#"{"@version":"1"}"#),
        ),
        // Both: eventTime wins and the shipper's copy is kept.
        (
            r#"{"@timestamp":"2020-09-14T00:44:25Z","eventTime":"2020-09-14T00:44:23Z"}"#,
            "2020-09-14T00:44:23+00:00",
            Some(r#"{"@timestamp":"2020-09-14T00:44:25Z"}"#),
        ),
        // A null eventTime falls back to @timestamp.
        (r#"{"eventTime":null,"@timestamp":"2020-09-14T00:44:23Z"}"#, "2020-09-14T00:44:23+00:00", None),
    ];
    for (input, time, extra) in cases {
        let parsed = parse(input);
        assert_eq!(one(&parsed.batch, "eventtime").as_deref(), Some(time), "{input}");
        let expected = extra.map(|e| serde_json::from_str::<serde_json::Value>(e).expect("json"));
        assert_eq!(additional(&parsed.batch), [expected], "{input}");
    }
}

#[test]
fn records_without_a_usable_time_are_rejected_and_the_rest_kept() {
    let input = r#"{"Records":[
        {"eventTime":"2024-05-01T00:00:00Z","eventName":"Kept"},
        {"eventTime":"not-a-time","eventName":"BadTime"},
        {"eventName":"NoTime"},
        "a string",
        {"eventTime":null},
        {"eventTime":1714521600},
        {"@timestamp":"yesterday"},
        {"eventTime":"2024-05-01T00:00:01Z","eventName":"AlsoKept"}
    ]}"#;
    let parsed = parse(input);
    assert_eq!(column(&parsed.batch, "eventname"), [Some("Kept".to_owned()), Some("AlsoKept".to_owned())]);
    let rejected: Vec<(Position, &str)> = parsed.rejected.iter().map(|r| (r.position, r.reason.as_str())).collect();
    assert_eq!(
        rejected,
        [
            (Position::Record(1), r#"eventTime "not-a-time" is not an RFC 3339 timestamp"#),
            (Position::Record(2), "no eventTime (or @timestamp) field"),
            (Position::Record(3), "the record is a string, not an object"),
            (Position::Record(4), "eventTime is null"),
            (Position::Record(5), "eventTime 1714521600 is not an RFC 3339 timestamp"),
            (Position::Record(6), r#"@timestamp "yesterday" is not an RFC 3339 timestamp"#),
        ]
    );
}

#[test]
fn json_lines_salvage_line_by_line() {
    let input = concat!(
        r#"{"eventTime":"2024-05-01T00:00:00Z","eventName":"First"}"#,
        "\n",
        r#"{"eventTime":"2024-05-01T00:00:01Z","eventName":"#,
        "\n",
        r#"{"digestStartTime":"2024-05-01T00:00:00Z"}"#,
        "\n\n",
        r#"{"eventName":"NoTime"}"#,
        "\n",
        r#"{"eventTime":"2024-05-01T00:00:02Z","eventName":"Last"}"#,
    );
    let parsed = parse(input);
    assert_eq!(column(&parsed.batch, "eventname"), [Some("First".to_owned()), Some("Last".to_owned())]);
    let positions: Vec<Position> = parsed.rejected.iter().map(|r| r.position).collect();
    assert_eq!(positions, [Position::Line(2), Position::Line(3), Position::Line(5)]);
    assert!(parsed.rejected.kept()[0].reason.starts_with("not JSON: "), "{}", parsed.rejected.kept()[0].reason);
    assert!(parsed.rejected.kept()[1].reason.contains(r#"no "Records" array"#), "{}", parsed.rejected.kept()[1].reason);
    assert_eq!(parsed.rejected.kept()[2].reason, "no eventTime (or @timestamp) field");
}

#[test]
fn unknown_fields_are_kept_under_their_path() {
    let input = r#"{"Records":[{
        "eventTime":"2024-05-01T00:00:00Z",
        "newRootField":{"a":[1,2]},
        "http":{"useragent":"shipper"},
        "userIdentity":{
            "type":"AssumedRole",
            "session_name":"alice",
            "sessionContext":{
                "newThing":true,
                "attributes":{"mfaAuthenticated":"true","key1":"value1"},
                "webIdFederationData":{"federatedProvider":"accounts.google.com","attributes":{"aud":"x.apps"},"extra":1}
            }
        },
        "tlsDetails":{"tlsVersion":"TLSv1.2","keyExchange":"x25519"},
        "addendum":{"reason":"DELIVERY_DELAY","note":"late"},
        "resources":[{"ARN":"arn:aws:s3:::b","tag":"t"},{"ARN":"arn:aws:s3:::c"},"not-an-object"],
        "weird key \"quoted\"":"v"
    }]}"#;
    let parsed = parse(input);
    let expected: serde_json::Value = serde_json::from_str(
        r#"{
        "newRootField":{"a":[1,2]},
        "http":{"useragent":"shipper"},
        "userIdentity.session_name":"alice",
        "userIdentity.sessionContext.newThing":true,
        "userIdentity.sessionContext.attributes.key1":"value1",
        "userIdentity.sessionContext.webIdFederationData.extra":1,
        "tlsDetails.keyExchange":"x25519",
        "addendum.note":"late",
        "resources[0].tag":"t",
        "resources[2]":"not-an-object",
        "weird key \"quoted\"":"v"
    }"#,
    )
    .expect("expected JSON");
    assert_eq!(additional(&parsed.batch), [Some(expected)]);
    let batch = &parsed.batch;
    assert_eq!(one(batch, "useridentity.sessioncontext.attributes.mfaauthenticated").as_deref(), Some("true"));
    assert_eq!(
        one(batch, "useridentity.sessioncontext.webidfederationdata.attributes").as_deref(),
        Some(r#"{"aud":"x.apps"}"#)
    );
    assert_eq!(one(batch, "tlsdetails.tlsversion").as_deref(), Some("TLSv1.2"));
    assert_eq!(one(batch, "addendum.reason").as_deref(), Some("DELIVERY_DELAY"));
}

#[test]
fn wrong_types_never_lose_the_value() {
    // (record fields, column, expected column text, expected additionalfields)
    let cases = [
        (r#""eventVersion":1.05"#, "eventversion", Some("1.05"), None),
        (r#""recipientAccountId":111122223333"#, "recipientaccountid", Some("111122223333"), None),
        (r#""errorCode":false"#, "errorcode", Some("false"), None),
        (r#""userAgent":{"name":"cli"}"#, "useragent", Some(r#"{"name":"cli"}"#), None),
        (r#""sourceIPAddress":["10.0.0.1","10.0.0.2"]"#, "sourceipaddress", Some(r#"["10.0.0.1","10.0.0.2"]"#), None),
        (r#""readOnly":"true""#, "readonly", Some("true"), None),
        (r#""readOnly":"yes""#, "readonly", None, Some(r#"{"readOnly":"yes"}"#)),
        (r#""managementEvent":1"#, "managementevent", None, Some(r#"{"managementEvent":1}"#)),
        (r#""readOnly":null"#, "readonly", None, None),
        (r#""requestParameters":"just text""#, "requestparameters", Some(r#""just text""#), None),
        (r#""requestParameters":42"#, "requestparameters", Some("42"), None),
        (r#""userIdentity":"root""#, "useridentity.type", None, Some(r#"{"userIdentity":"root"}"#)),
        (r#""resources":{"ARN":"a"}"#, "resources", None, Some(r#"{"resources":{"ARN":"a"}}"#)),
        (
            r#""userIdentity":{"sessionContext":{"attributes":{"creationDate":"soon"}}}"#,
            "useridentity.sessioncontext.attributes.creationdate",
            None,
            Some(r#"{"userIdentity.sessionContext.attributes.creationDate":"soon"}"#),
        ),
        (r#""eventName":"First","eventName":"Second""#, "eventname", Some("Second"), Some(r#"{"eventName":"First"}"#)),
    ];
    for (fields, path, expected, extra) in cases {
        let input = format!(r#"{{"eventTime":"2024-05-01T00:00:00Z",{fields}}}"#);
        let parsed = parse(&input);
        let batch = &parsed.batch;
        let value = if path == "resources" {
            let list = batch.column_by_name(path).expect("resources");
            (!list.is_null(0)).then(|| "present".to_owned())
        } else {
            one(batch, path)
        };
        assert_eq!(value.as_deref(), expected, "{fields}");
        let extra = extra.map(|e| serde_json::from_str::<serde_json::Value>(e).expect("json"));
        assert_eq!(additional(batch), [extra], "{fields}");
    }
}

#[test]
fn objects_that_are_not_cloudtrail_are_malformed() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "the object is empty"),
        (b"  \n\t ", "the object is empty"),
        (b"{\"foo\":1}", r#"no "Records" array, and not a CloudTrail event (its keys are: foo)"#),
        (b"{}", r#"no "Records" array, and an empty object is not a CloudTrail event"#),
        (
            b"{\"awsAccountId\":\"1\",\"digestStartTime\":\"2024-05-01T00:00:00Z\",\"logFiles\":[]}",
            "(its keys are: awsAccountId, digestStartTime, logFiles)",
        ),
        (b"{\"Records\":{}}", r#""Records" is an object, not an array"#),
        (b"{\"Records\":null}", r#""Records" is null, not an array"#),
        (b"[{\"eventTime\":\"2024-05-01T00:00:00Z\"}]", "a JSON array"),
        (b"42", "a number, not a JSON object"),
        (b"\"Records\"", "a string, not a JSON object"),
        (b"{\"Records\":[", "not JSON: "),
        (b"{\"Records\":[{\"eventTime\":\"2024-05-01T00:00:00Z\"}]} trailing", "not JSON: "),
        (b"<?xml version=\"1.0\"?><Error/>", "not JSON: "),
        (b"{\"eventTime\":\"2024-05-01T00:00:00Z\",\"eventName\":\"\xff\xfe\"}", "not valid UTF-8 text"),
        (b"{\"eventTime\":\"2024-05-01T00:00:00Z\"}\n{\"eventName\":\"\xc3\x28\"}", "line 2 is not valid UTF-8 text"),
        (b"{\"a\":1}\n{\"b\":2}", "no line is a CloudTrail event; line 1: no \"Records\" array"),
        (b"{not json}\nstill not", "no line is a CloudTrail event; line 1: not JSON: "),
    ];
    for (input, expected) in cases {
        let reason = malformed_reason(input);
        assert!(
            reason.contains(expected),
            "{:?}: {reason:?} does not contain {expected:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn the_parser_is_reusable_after_good_and_bad_objects() {
    let mut parser = CloudTrailParser::new();
    let first = parse_bytes(&mut parser, TWO_RECORDS.as_bytes()).expect("first");
    // A JSON-lines object that fails halfway must not leave rows behind for the next object.
    let bad = b"{\"eventTime\":\"2024-05-01T00:00:00Z\"}\n{\"eventName\":\"\xc3\x28\"}";
    assert!(parse_bytes(&mut parser, bad).is_err());
    let again = parse_bytes(&mut parser, TWO_RECORDS.as_bytes()).expect("again");
    assert_eq!(first.batch, again.batch);
    assert!(again.rejected.is_empty());
}

#[test]
fn insights_events_keep_their_details() {
    let input = r#"{"Records":[{"eventVersion":"1.07","eventTime":"2024-05-01T10:00:00Z","awsRegion":"us-east-1",
        "eventID":"e1","eventType":"AwsCloudTrailInsight","recipientAccountId":"111122223333","sharedEventID":"s1",
        "insightDetails":{"state":"Start","eventSource":"ssm.amazonaws.com","eventName":"UpdateInstanceInformation",
        "insightType":"ApiCallRateInsight","insightContext":{"statistics":{"baseline":{"average":85.4},"insight":{"average":664}}}},
        "eventCategory":"Insight"}]}"#;
    let batch = parse(input).batch;
    assert_eq!(one(&batch, "eventtype").as_deref(), Some("AwsCloudTrailInsight"));
    assert_eq!(one(&batch, "sharedeventid").as_deref(), Some("s1"));
    let details: serde_json::Value =
        serde_json::from_str(&one(&batch, "insightdetails").expect("details")).expect("json");
    assert_eq!(details["insightContext"]["statistics"]["baseline"]["average"], 85.4);
    assert_eq!(additional(&batch), [None]);
}

#[test]
fn layout_names_are_the_schema_columns() {
    // The parser finds columns by position; this guards against the two lists drifting apart.
    fn check(layout: &columns::StructLayout, fields: &[arrow::datatypes::FieldRef], path: &str) {
        assert_eq!(layout.fields.len(), fields.len(), "{path}");
        for (known, field) in layout.fields.iter().zip(fields) {
            let here = format!("{path}.{}", known.key);
            assert_eq!(known.key.to_lowercase(), *field.name(), "{here}");
            let position = layout.fields.iter().position(|f| f.key == known.key);
            for hint in [0, 1, 5, layout.fields.len() - 1, layout.fields.len(), 1000] {
                assert_eq!(layout.find(known.key, hint), position, "{here} from {hint}");
            }
            assert_eq!(layout.find("notAKey", 3), None, "{here}");
            match (known.kind, field.data_type()) {
                (Kind::Struct(inner), DataType::Struct(children)) => check(inner, children, &here),
                (Kind::List(inner), DataType::List(item)) => match item.data_type() {
                    DataType::Struct(children) => check(inner, children, &here),
                    other => panic!("{here}: list of {other}"),
                },
                (Kind::Text | Kind::Json, DataType::Utf8) | (Kind::Bool, DataType::Boolean) => {}
                (Kind::Time | Kind::EventTime, DataType::Timestamp(..)) => {}
                (kind, data_type) => panic!("{here}: {kind:?} stored in {data_type}"),
            }
        }
    }
    assert_eq!(RECORD.fields[EVENT_TIME_SLOT].key, "eventTime");
    let schema = bunker_schemas::cloudtrail::schema();
    check(&RECORD, &schema.fields()[..RECORD.fields.len()], "");
    assert_eq!(schema.field(RECORD.fields.len()).name(), bunker_schemas::cloudtrail::ADDITIONAL_FIELDS);
}

/// Bad bytes of every kind give an error or rows, never a panic.
#[test]
fn never_panics_on_hostile_input() {
    let mut parser = CloudTrailParser::new();
    // Every truncation of a real-shaped file.
    for end in 0..TWO_RECORDS.len() {
        let _ = parse_bytes(&mut parser, &TWO_RECORDS.as_bytes()[..end]);
    }
    // Random bytes, and random bytes after a valid prefix.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for len in [1usize, 2, 7, 64, 1000, 4096] {
        for _ in 0..20 {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            let _ = parse_bytes(&mut parser, &bytes);
            let mut prefixed = br#"{"Records":[{"eventTime":"2024-05-01T00:00:00Z","x":""#.to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = parse_bytes(&mut parser, &prefixed);
        }
    }
    // Nesting past simd-json's limit is malformed; nesting below it is kept as JSON text.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(
        malformed_reason(
            format!(r#"{{"Records":[{{"eventTime":"2024-05-01T00:00:00Z","requestParameters":{deep}}}]}}"#).as_bytes()
        )
        .contains("deeper")
    );
    let nested = format!("{}{}", "[".repeat(900), "]".repeat(900));
    let parsed = parse(&format!(
        r#"{{"Records":[{{"eventTime":"2024-05-01T00:00:00Z","requestParameters":{nested},"userIdentity":{{"x":{nested}}}}}]}}"#
    ));
    assert_eq!(one(&parsed.batch, "requestparameters"), Some(nested.clone()));
    // Huge and odd numbers where strings are expected.
    let parsed = parse(
        r#"{"eventTime":"2024-05-01T00:00:00Z","eventID":1e308,"requestID":-0.0,"eventName":18446744073709551615}"#,
    );
    assert_eq!(one(&parsed.batch, "eventid").as_deref(), Some("1e308"));
    assert_eq!(one(&parsed.batch, "eventname").as_deref(), Some("18446744073709551615"));
}

/// A 50 MB single-line Records file, as a busy trail delivers: every record becomes a row.
#[test]
fn a_fifty_megabyte_single_line_file() {
    let record = r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:s","arn":"arn:aws:sts::111122223333:assumed-role/R/s","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/R","accountId":"111122223333","userName":"R"},"attributes":{"creationDate":"2024-05-01T00:00:00Z","mfaAuthenticated":"false"}}},"eventTime":"2024-05-01T12:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-1","sourceIPAddress":"10.1.2.3","userAgent":"aws-cli/2.15","requestParameters":{"instancesSet":{},"filterSet":{"items":[{"name":"tag:env","valueSet":{"items":[{"value":"prod"}]}}]}},"responseElements":null,"requestID":"r","eventID":"e","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"ec2.us-east-1.amazonaws.com"}}"#;
    let count = 50_000_000 / (record.len() + 1) + 1;
    let mut data = Vec::with_capacity(count * (record.len() + 1) + 16);
    data.extend_from_slice(b"{\"Records\":[");
    for i in 0..count {
        if i > 0 {
            data.push(b',');
        }
        data.extend_from_slice(record.as_bytes());
    }
    data.extend_from_slice(b"]}");
    assert!(data.len() >= 50_000_000);
    let parsed = CloudTrailParser::new().parse(&mut data, &ctx()).expect("parses");
    assert_eq!(parsed.batch.num_rows(), count);
    assert!(parsed.rejected.is_empty());
    let names = column(&parsed.batch.slice(count - 1, 1), "useridentity.sessioncontext.sessionissuer.username");
    assert_eq!(names, [Some("R".to_owned())]);
}

#[test]
fn real_samples_parse() {
    let root = real_samples_dir();
    let lib = "aws-cloudtrail-processing-library/src/test/resources/resources";
    let docs = "awsdocs-cloudtrail/extracted";
    let elastic = "elastic-integrations/packages/aws/data_stream/cloudtrail/_dev/test/pipeline";
    // (file, rows, rejected records)
    let good: Vec<(String, usize, usize)> = vec![
        (format!("{lib}/SerializerTestFile.json"), 6, 0),
        (format!("{lib}/SerializerTestFileCompact.json"), 6, 0),
        (format!("{lib}/SerializerTestFileCompact.json.gz"), 6, 0),
        (format!("{lib}/SerializerTestFileLocation.json"), 6, 0),
        (format!("{lib}/SerializerTestFileMissField.json"), 3, 1),
        (format!("{lib}/SerializerAllFieldsNull.json"), 1, 1),
        (format!("{lib}/SerializerTestFileNewFieldAtRandomPlaces.json"), 2, 0),
        (format!("{lib}/SerializerTestFileNewFieldsInRoot.json"), 2, 0),
        (format!("{lib}/SerializerTestFileNewFieldsInUserIdentity.json"), 2, 0),
        (format!("{lib}/SerializerTestFileNewFieldName.json"), 1, 1),
        (format!("{lib}/SerializerTestFileBadFieldName.json"), 1, 1),
        (format!("{lib}/SerializerVariousUserIdentityTestFile.json"), 1, 0),
        ("grafana-loki/tools/lambda-promtail/testdata/cloudtrail-log-file.json.gz".to_owned(), 2, 0),
        ("otrf-security-datasets/unzipped/ec2_proxy_s3_exfiltration_2020-09-14011940.json".to_owned(), 103, 0),
        ("cloudtrail2sightings/unzipped/aws.defense-evasion.cloudtrail-delete.json".to_owned(), 1, 0),
        ("cloudtrail2sightings/unzipped/aws.exfiltration.ec2-share-ebs-snapshot.json".to_owned(), 1, 0),
        ("cloudtrail2sightings/unzipped/aws.credential-access.secretsmanager-retrieve-secrets.json".to_owned(), 10, 0),
        (format!("{docs}/cloudtrail-log-file-examples__block02.json"), 1, 0),
        (format!("{docs}/cloudtrail-log-file-examples__block03.json"), 1, 0),
        (format!("{docs}/cloudtrail-log-file-examples__block04.json"), 1, 0),
        (format!("{docs}/cloudtrail-log-file-examples__block05.json"), 1, 0),
        (format!("{docs}/cloudtrail-log-file-examples__block06.json"), 1, 0),
        (format!("{docs}/cloudtrail-log-file-examples__block08.json"), 1, 0),
        (format!("{docs}/cloudtrail-log-file-examples__block09.json"), 2, 0),
        (format!("{docs}/non-api-aws-service-events__block00.json"), 1, 0),
        // A documentation fragment: eventVersion and userIdentity only, so an event with no time.
        (format!("{docs}/cloudtrail-event-reference-user-identity__block05.json"), 0, 1),
        (format!("{elastic}/test-authorize-security-group-ingress-json.log"), 1, 0),
        (format!("{elastic}/test-console-login-json.log"), 3, 0),
        (format!("{elastic}/test-delete-detector-json.log"), 1, 0),
        (format!("{elastic}/test-update-trail-json.log"), 2, 0),
        (format!("{elastic}/test-us-gov-arn.log"), 1, 0),
        (format!("{elastic}/test-user-authentication.log"), 1, 0),
    ]
    .into_iter()
    .chain(
        (0..=9)
            .map(|n| (format!("{docs}/cloudtrail-event-reference-aws-console-sign-in-events__block{n:02}.json"), 1, 0)),
    )
    .collect();
    let mut parser = CloudTrailParser::new();
    for (file, rows, rejected) in &good {
        let mut data = read_sample(&root.join(file));
        let parsed = parser.parse(&mut data, &ctx()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(parsed.batch.schema(), bunker_schemas::cloudtrail::schema(), "{file}");
        assert_eq!(
            (parsed.batch.num_rows(), parsed.rejected.len()),
            (*rows, *rejected),
            "{file}: {:?}",
            parsed.rejected
        );
        let times = parsed.batch.column_by_name("eventtime").expect("eventtime");
        assert_eq!(times.null_count(), 0, "{file}: every row has its event time");
        // The reused parser has sized its buffers from the objects before this one; a fresh
        // parser has not. The rows must not depend on it.
        let mut data = read_sample(&root.join(file));
        let fresh = CloudTrailParser::new().parse(&mut data, &ctx()).expect("fresh parser");
        assert_eq!(parsed.batch, fresh.batch, "{file}: a reused parser gives other rows");
    }

    let bad = [
        format!("{lib}/SerializerTestFileBadJsonFormat.json"),
        format!("{docs}/cloudtrail-log-file-examples__block07.json.invalid"),
        "cloudtrail2sightings/unzipped/aws.execution.ec2-user-data.json".to_owned(),
        // Not event files: a digest, CLI requests and responses.
        format!("{docs}/cloudtrail-log-file-validation-digest-file-structure__block02.json"),
        format!("{docs}/cloudtrail-log-file-validation-digest-file-structure__block03.json"),
        format!("{docs}/view-insights-events-cli__block02.json"),
        format!("{docs}/logging-insights-events-with-cloudtrail__block01.json"),
        format!("{elastic}/test-cloudtrail-digest-json.log"),
        format!("{lib}/SQSMessageBody"),
    ];
    for file in &bad {
        let mut data = read_sample(&root.join(file));
        match parser.parse(&mut data, &ctx()) {
            Err(IngestError::Malformed { reason, .. }) => assert!(!reason.is_empty(), "{file}"),
            Err(other) => panic!("{file}: expected Malformed, got {other}"),
            Ok(parsed) => panic!("{file}: expected Malformed, got {} rows", parsed.batch.num_rows()),
        }
    }
}

#[test]
fn real_user_identity_variants_keep_every_field() {
    let root = real_samples_dir();
    let mut data = read_sample(&root.join(
        "aws-cloudtrail-processing-library/src/test/resources/resources/SerializerVariousUserIdentityTestFile.json",
    ));
    let batch = CloudTrailParser::new().parse(&mut data, &ctx()).expect("parses").batch;
    assert_eq!(
        one(&batch, "useridentity.sessioncontext.webidfederationdata.federatedprovider").as_deref(),
        Some("webIdFederationDataFederatedProvider1")
    );
    assert_eq!(
        one(&batch, "useridentity.sessioncontext.webidfederationdata.attributes").as_deref(),
        Some(r#"{"key1":"value1","key2":"value2"}"#)
    );
    assert_eq!(
        one(&batch, "useridentity.sessioncontext.sessionissuer.username").as_deref(),
        Some("sessionIssuerUserName1")
    );
    let extra = additional(&batch).pop().flatten().expect("unknown fields kept");
    assert_eq!(extra["userIdentity.newFieldStringType"], "newFieldString1");
    assert_eq!(extra["userIdentity.newFieldsObjectType"]["newFieldsKey2"], "newFieldsObject2");
    assert_eq!(extra["userIdentity.sessionContext.attributes.key1"], "value1");
    let resources = batch.column_by_name("resources").expect("resources").as_list::<i32>();
    assert_eq!(resources.value_length(0), 3);
}

/// `{"Records":[{},{},...]}` with `n` empty records.
fn empty_records(n: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(n * 3 + 16);
    data.extend_from_slice(b"{\"Records\":[");
    for i in 0..n {
        if i > 0 {
            data.push(b',');
        }
        data.extend_from_slice(b"{}");
    }
    data.extend_from_slice(b"]}");
    data
}

/// Millions of tiny records: every bad one is counted, only the first few are kept with a reason,
/// so the rejections of a 6 MB object do not take hundreds of MB.
#[test]
fn tiny_records_after_real_ones_do_not_reserve_for_real_ones() {
    // A parser that has learnt how much real events hold per column, then an object of a million
    // `{}`: reserving for a million real events would be gigabytes.
    let mut parser = CloudTrailParser::new();
    for _ in 0..3 {
        parse_bytes(&mut parser, TWO_RECORDS.as_bytes()).expect("real records");
    }
    let mut data = empty_records(1_000_000);
    let parsed = parser.parse(&mut data, &ctx()).expect("parses");
    assert_eq!((parsed.batch.num_rows(), parsed.rejected.len()), (0, 1_000_000));
    let held = parsed.batch.get_array_memory_size();
    assert!(held < 16 * data.len(), "{held} bytes of buffers for a {}-byte object", data.len());
}

#[test]
fn millions_of_tiny_records_are_counted_not_kept() {
    let n = 2_000_000;
    let mut data = empty_records(n);
    let parsed = CloudTrailParser::new().parse(&mut data, &ctx()).expect("parses");
    assert_eq!(parsed.batch.num_rows(), 0);
    assert_eq!(parsed.rejected.len(), n);
    assert_eq!(parsed.rejected.kept().len(), crate::parsed::MAX_KEPT_REJECTIONS);
    assert_eq!(parsed.rejected.first().map(|r| r.position), Some(Position::Record(0)));
}

/// So many tiny values that simd-json's tape would take far more memory than the text: refused
/// before it is built, with the reason.
#[test]
fn an_object_of_tiny_values_past_the_tape_budget_is_malformed() {
    let reason = malformed_reason(&empty_records(crate::tape::UNCOUNTED_BYTES / 3 + 1));
    assert!(reason.contains("JSON values") && reason.contains("bytes per byte of text"), "{reason}");
}

/// A string of many MB in a field is data like any other: kept whole, not cut.
#[test]
fn an_enormous_string_is_kept_whole() {
    let big = "A".repeat(24 << 20);
    let input = format!(
        r#"{{"Records":[{{"eventTime":"2024-05-01T00:00:00Z","eventName":"{big}","requestParameters":{{"policy":"{big}"}}}}]}}"#
    );
    let parsed = parse(&input);
    assert_eq!(one(&parsed.batch, "eventname").map(|s| s.len()), Some(24 << 20));
    let params = one(&parsed.batch, "requestparameters").expect("kept");
    assert_eq!(params.len(), (24 << 20) + r#"{"policy":""}"#.len());
}

/// A parser that parses every document piece by piece, in pieces of about `piece_bytes`.
fn piecewise_parser(piece_bytes: usize) -> CloudTrailParser {
    CloudTrailParser { piecewise_from: 0, piece_bytes, ..CloudTrailParser::new() }
}

/// A pretty-printed `{"Records":[...]}` document of varied records (a rejected one, one that is not
/// an object, unknown and repeated keys, escapes), with other root keys before and after.
fn varied_document(records: usize) -> String {
    let mut out = String::from("{\n  \"Version\": {\"a\": [1, \"]}\"]},\n  \"Records\": [\n");
    for n in 0..records {
        if n > 0 {
            out.push_str(",\n");
        }
        out.push_str(&match n % 5 {
            0 => format!(
                r#"    {{"eventVersion": "1.09", "eventTime": "2024-05-01T12:{:02}:00Z", "eventName": "GetObject",
      "eventSource": "s3.amazonaws.com", "requestParameters": {{"key": "a \"quoted\" ]}} key {n}"}}}}"#,
                n % 60
            ),
            1 => format!(r#"{{"eventTime": "2024-05-01T13:00:{:02}Z", "newField{n}": [true, null, 2.5]}}"#, n % 60),
            2 => r#"{"eventName": "NoTime"}"#.to_owned(),
            3 => "42".to_owned(),
            _ => format!(
                r#"{{"eventTime": "2024-05-02T00:00:00Z", "eventName": "A", "eventName": "B\\C {n}", "awsRegion": "eu-west-1"}}"#
            ),
        });
    }
    out.push_str("\n  ],\n  \"Trailer\": null\n}\n");
    out
}

/// A large document parsed piece by piece gives exactly the rows and rejections it gives parsed
/// whole, whatever the size of the pieces.
#[test]
fn large_documents_parse_piece_by_piece_as_they_would_whole() {
    let document = varied_document(101);
    let whole = parse_bytes(&mut CloudTrailParser::new(), document.as_bytes()).expect("parses whole");
    assert_eq!(whole.batch.num_rows(), 61);
    assert_eq!(whole.rejected.len(), 40);
    for piece_bytes in [1, 300, 2_000, 1 << 20] {
        let mut parser = piecewise_parser(piece_bytes);
        let pieces = parse_bytes(&mut parser, document.as_bytes()).expect("parses in pieces");
        assert!(!parser.piece.is_empty() || piece_bytes == 1, "{piece_bytes}: the pieces were used");
        assert_eq!(pieces.batch, whole.batch, "{piece_bytes}");
        assert_eq!(pieces.rejected, whole.rejected, "{piece_bytes}");
        // The parser goes on to the next object as usual.
        let again = parse_bytes(&mut parser, document.as_bytes()).expect("parses again");
        assert_eq!(again.batch, whole.batch);
    }
}

/// A large document that is not JSON somewhere — in a record, in another value of the root, after
/// the root — fails as a whole, for the reason it fails parsed in one go, and leaves no rows behind.
#[test]
fn a_large_document_that_is_not_json_fails_as_it_would_whole() {
    let document = varied_document(30);
    let broken = [
        document.replacen(r#""eventName": "NoTime""#, r#""eventName": NoTime"#, 1),
        document.replacen(r#""Trailer": null"#, r#""Trailer": nul"#, 1),
        document.replacen(r#"[1, "]}"]"#, r#"[1, "]}"}"#, 1),
        format!("{document} {{}}"),
        document.replacen("42", "42,", 1),
    ];
    let mut parser = piecewise_parser(300);
    for input in &broken {
        let whole = malformed_reason(input.as_bytes());
        match parse_bytes(&mut parser, input.as_bytes()) {
            Err(IngestError::Malformed { reason, .. }) => assert_eq!(reason, whole),
            other => panic!("expected Malformed ({whole}), got {other:?}"),
        }
        let next = parse_bytes(&mut parser, document.as_bytes()).expect("the next object parses");
        assert_eq!(next.batch.num_rows(), 18, "nothing left over from the broken object");
    }
    // Bytes that are not UTF-8 inside a record.
    let mut bytes = document.into_bytes();
    let at = bytes.windows(6).position(|w| w == b"NoTime").expect("a record");
    bytes[at] = 0xff;
    let whole = malformed_reason(&bytes);
    match parse_bytes(&mut parser, &bytes) {
        Err(IngestError::Malformed { reason, .. }) => assert_eq!(reason, whole),
        other => panic!("expected Malformed ({whole}), got {other:?}"),
    }
}

/// Objects appended to one group come out, cut back by their row counts, exactly as each parses
/// alone — lineage included — whatever fails between them: an object rejected before any row, a
/// JSON-lines object that fails after rows of its own, a large document whose piece is not JSON
/// (parsed again whole), and objects of no rows at all.
#[test]
fn objects_parsed_as_a_group_are_what_each_gives_alone() {
    let document = varied_document(30);
    let not_utf8_after_rows = b"{\"eventTime\":\"2024-05-01T00:00:00Z\"}\n{\"eventName\":\"\xc3\x28\"}".to_vec();
    let broken_piece = document.replacen(r#""eventName": "NoTime""#, r#""eventName": NoTime"#, 1);
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("a", TWO_RECORDS.as_bytes().to_vec()),
        ("b-not-json", b"{\"Records\": [".to_vec()),
        ("c", document.clone().into_bytes()),
        ("d-fails-after-rows", not_utf8_after_rows),
        ("e-no-rows", br#"{"Records":[]}"#.to_vec()),
        ("f", TWO_RECORDS.as_bytes().to_vec()),
        ("g-broken-piece", broken_piece.into_bytes()),
        ("h", document.into_bytes()),
        ("i-only-rejected", br#"{"Records":[{"eventName":"NoTime"}]}"#.to_vec()),
    ];
    let context = |key| ObjectContext { bucket: "org-log-archive", key, key_date: None };
    let alone: Vec<Result<Parsed>> =
        inputs.iter().map(|(key, input)| piecewise_parser(300).parse(&mut input.clone(), &context(key))).collect();

    let mut group = piecewise_parser(300);
    group.expect_records(200);
    let mut rows = Vec::new();
    for ((key, input), alone) in inputs.iter().zip(&alone) {
        match (group.append(&mut input.clone(), &context(key)), alone) {
            (Ok(appended), Ok(alone)) => {
                assert_eq!(appended.rows, alone.batch.num_rows(), "{key}");
                assert_eq!(appended.rejected, alone.rejected, "{key}");
                rows.push(appended.rows);
            }
            (Err(grouped), Err(alone)) => assert_eq!(grouped.to_string(), alone.to_string(), "{key}"),
            (grouped, alone) => panic!("{key}: grouped {grouped:?}, alone {alone:?}"),
        }
    }
    let batches = group.finish_group().expect("finishes");
    assert!(batches.len() > 1, "the objects that failed after rows cut the group into parts");
    let objects = crate::parsed::split_group(&batches, &rows).expect("cut back");
    let expected: Vec<&RecordBatch> = alone.iter().filter_map(|a| a.as_ref().ok()).map(|p| &p.batch).collect();
    assert_eq!(objects.len(), expected.len());
    for (object, expected) in objects.iter().zip(expected) {
        assert_eq!(object, expected);
    }

    // The parser is left empty, for the next group or object.
    let next = parse_bytes(&mut group, TWO_RECORDS.as_bytes()).expect("next");
    assert_eq!(next.batch.num_rows(), 2);
    assert_eq!(column(&next.batch, "source_key"), vec![Some(KEY.to_owned()); 2]);
}

/// `parse` is for one object at a time: with a group open it refuses rather than return the
/// group's rows as this object's. A group given up on leaves nothing behind.
#[test]
fn parse_refuses_while_a_group_is_open() {
    let mut parser = CloudTrailParser::new();
    parser.append(&mut TWO_RECORDS.as_bytes().to_vec(), &ctx()).expect("appends");
    assert!(matches!(parse_bytes(&mut parser, TWO_RECORDS.as_bytes()), Err(IngestError::Config(_))));
    assert_eq!(parser.finish_group().expect("finishes")[0].num_rows(), 2);

    // A group with a finished part (an object failed after rows of its own) and open rows.
    parser.append(&mut TWO_RECORDS.as_bytes().to_vec(), &ctx()).expect("appends");
    let bad = b"{\"eventTime\":\"2024-05-01T00:00:00Z\"}\n{\"eventName\":\"\xc3\x28\"}";
    assert!(parser.append(&mut bad.to_vec(), &ctx()).is_err());
    parser.append(&mut TWO_RECORDS.as_bytes().to_vec(), &ctx()).expect("appends");
    parser.discard_group();
    assert_eq!(parse_bytes(&mut parser, TWO_RECORDS.as_bytes()).expect("parses").batch.num_rows(), 2);
}
