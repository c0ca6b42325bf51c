//! The Route 53 Resolver query log parser over arbitrary bytes, as `parse_content` runs it on a
//! decompressed object.
#![no_main]

use std::sync::OnceLock;

use bunker_fuzz::{DNS_KEY, check_parser, context};
use bunker_ingest::dns::DnsLogParser;
use bunker_ingest::{ObjectContext, Parsed, Result};
use bunker_schemas::LogTable;
use libfuzzer_sys::fuzz_target;

/// Parsed after every input by the same parser: a good record with answers and an unknown field,
/// and a record it rejects.
const REFERENCE: &[u8] = br#"{"version":"1.100000","account_id":"111122223333","region":"eu-west-1","vpc_id":"vpc-0a1b2c3d","query_timestamp":"2024-05-01T12:05:00Z","query_name":"example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[{"Rdata":"192.0.2.10","Type":"A","Class":"IN"}],"srcaddr":"10.1.2.3","srcport":"48701","transport":"UDP","srcids":{"instance":"i-0a1b2c3d4e5f60718"},"new_field":[1,2]}
{"query_name":"example.com.","srcport":"70000","query_timestamp":"2024-05-01T12:05:00Z"}
"#;

static EXPECTED: OnceLock<Result<Parsed>> = OnceLock::new();

fn parse(parser: &mut DnsLogParser, input: &[u8], ctx: &ObjectContext<'_>) -> Result<Parsed> {
    parser.parse(input, ctx)
}

fuzz_target!(|data: &[u8]| {
    let ctx = context(DNS_KEY);
    check_parser(LogTable::Dns, &ctx, data, REFERENCE, &EXPECTED, DnsLogParser::new, parse);
});
