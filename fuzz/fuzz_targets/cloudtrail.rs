//! The CloudTrail parser over arbitrary bytes, as `parse_content` runs it on a decompressed object.
#![no_main]

use std::sync::OnceLock;

use bunker_fuzz::{CLOUDTRAIL_KEY, check_parser, context};
use bunker_ingest::cloudtrail::CloudTrailParser;
use bunker_ingest::{ObjectContext, Parsed, Result};
use bunker_schemas::LogTable;
use libfuzzer_sys::fuzz_target;

/// Parsed after every input by the same parser: one good record, one rejected, an unknown field.
const REFERENCE: &[u8] = br#"{"Records":[
{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","sessionContext":{"attributes":{"mfaAuthenticated":"true"}}},"eventTime":"2024-05-01T12:05:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","requestParameters":{"bucketName":"logs","key":"a \"b\"\n"},"readOnly":true,"resources":[{"ARN":"arn:aws:s3:::logs","type":"AWS::S3::Bucket"}],"recipientAccountId":"111122223333","shipper":{"id":1}},
{"eventName":"ConsoleLogin"}
]}"#;

static EXPECTED: OnceLock<Result<Parsed>> = OnceLock::new();

/// The parser reads the object in place, as `parse_content` lets it; the fuzzer's bytes are copied.
fn parse(parser: &mut CloudTrailParser, input: &[u8], ctx: &ObjectContext<'_>) -> Result<Parsed> {
    let mut content = input.to_vec();
    parser.parse(&mut content, ctx)
}

fuzz_target!(|data: &[u8]| {
    let ctx = context(CLOUDTRAIL_KEY);
    check_parser(LogTable::CloudTrail, &ctx, data, REFERENCE, &EXPECTED, CloudTrailParser::new, parse);
});
