//! The VPC flow-log parser over arbitrary bytes, as `parse_content` runs it on a decompressed object.
#![no_main]

use std::sync::OnceLock;

use bunker_fuzz::{VPCFLOW_KEY, check_parser, context};
use bunker_ingest::vpcflow::FlowLogParser;
use bunker_ingest::{ObjectContext, Parsed, Result};
use bunker_schemas::LogTable;
use libfuzzer_sys::fuzz_target;

/// Parsed after every input by the same parser: a header, a good line, a line it rejects.
const REFERENCE: &[u8] = b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status
2 111122223333 eni-0a1b2c3d4e5f60718 198.51.100.7 10.1.2.3 51522 443 6 12 5320 1714521600 1714521660 ACCEPT OK
2 111122223333 eni-0a1b2c3d4e5f60718 198.51.100.7 10.1.2.3 70000 443 6 12 5320 1714521600 1714521660 ACCEPT OK
";

static EXPECTED: OnceLock<Result<Parsed>> = OnceLock::new();

fn parse(parser: &mut FlowLogParser, input: &[u8], ctx: &ObjectContext<'_>) -> Result<Parsed> {
    parser.parse(input, ctx)
}

fuzz_target!(|data: &[u8]| {
    let ctx = context(VPCFLOW_KEY);
    check_parser(LogTable::VpcFlow, &ctx, data, REFERENCE, &EXPECTED, FlowLogParser::new, parse);
});
