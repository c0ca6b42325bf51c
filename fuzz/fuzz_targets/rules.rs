//! Rule files through the rule loader as `bunker rules test --rules DIR` and the worker run it:
//! `Rule::parse` (YAML, then every field's checks), then `engine::validate` (the SQL planned
//! against the table schemas with bunker's functions). Built with `--features rules`.
#![no_main]

use std::sync::OnceLock;

use bunker_detect::{DetectError, Rule, engine};
use libfuzzer_sys::fuzz_target;

/// The origin every input is named by; each error must name it.
const ORIGIN: &str = "fuzz/rule.yaml";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime"))
}

/// A loader error must be a `Rule` error naming the file and saying what is wrong.
fn check_error(error: &DetectError) {
    match error {
        DetectError::Rule { origin, reason } => {
            assert_eq!(origin, ORIGIN, "an error naming the wrong file");
            assert!(!reason.trim().is_empty(), "a rule refused without a reason");
        }
        other => panic!("the loader failed with something other than a rule error: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // Rule files are read with `read_to_string`: bytes that are not UTF-8 never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let rule = match Rule::parse(ORIGIN, text) {
        Ok(rule) => rule,
        Err(error) => return check_error(&error),
    };
    assert!(!rule.id.is_empty() && !rule.tables.is_empty() && !rule.dedup.key.is_empty());
    assert!(rule.schedule.is_some() == rule.lookback.is_some(), "a schedule without a lookback, or back");
    if let Err(error) = runtime().block_on(engine::validate(std::slice::from_ref(&rule))) {
        check_error(&error);
    }
});
