//! Sigma files through the Sigma loader as `bunker rules import` and `--rules DIR` run it: the
//! YAML documents, the detection and condition compiler, the correlations, and then
//! `engine::validate` on every rule it compiled (the SQL it wrote planned against the table
//! schemas). Built with `--features rules`.
#![no_main]

use std::sync::OnceLock;

use bunker_detect::{DetectError, engine, sigma};
use libfuzzer_sys::fuzz_target;

/// The origin every input is named by; each error must name it.
const ORIGIN: &str = "fuzz/sigma.yml";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime"))
}

/// A refusal names the file and says why.
fn check_refusal(error: &DetectError) {
    match error {
        DetectError::Sigma { origin, reason, .. } | DetectError::Rule { origin, reason } => {
            assert!(origin.starts_with(ORIGIN), "an error naming the wrong file: {origin}");
            assert!(!reason.trim().is_empty(), "a rule refused without a reason");
        }
        other => panic!("the Sigma loader failed with something other than a refusal: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Whether it is taken for Sigma must not depend on anything but the text, and never panic.
    let _ = sigma::is_sigma(text);
    let rules = match sigma::parse(ORIGIN, text) {
        Ok(rules) => rules,
        Err(error) => return check_refusal(&error),
    };
    for rule in &rules {
        assert!(rule.id.starts_with("sigma-") && !rule.title.is_empty() && !rule.dedup.key.is_empty());
        // What the compiler wrote must plan: an error here is the compiler's bug, not the input's.
        if let Err(error) = runtime().block_on(engine::validate(std::slice::from_ref(rule))) {
            panic!("compiled SQL that does not plan: {error}\n{}", rule.sql);
        }
    }
});
