//! The memory simd-json's tape takes for a piece of JSON, bounded before the JSON is parsed.
//!
//! The tape holds one node (24 bytes) per value and per key. Real logs have values of tens of
//! bytes, so their tape is 2 to 3.5 times the size of the text; a hostile object of tiny values
//! (`{"Records":[{},{},...]}` or `[1,1,1,...]`) needs 12 bytes of tape per byte of text, which at
//! the default 256 MiB object cap is 3 GiB per object being parsed. Counting the bytes that can
//! precede a node is one cheap pass over large objects and turns that into an error naming the
//! object (or, for a line of a JSON-lines log, a rejected line).

use simd_json::{Node, Tape};

/// Bytes of tape allowed per byte of text. Real CloudTrail and Resolver logs need 2 to 3.5
/// (measured on the public samples and on generated archives).
pub const MAX_TAPE_PER_TEXT_BYTE: usize = 6;

/// Text shorter than this is not counted: whatever it holds, its tape stays within a few hundred MiB.
pub const UNCOUNTED_BYTES: usize = 16 << 20;

/// Tape allocations larger than this (16 MiB) are released after the object instead of kept for
/// the next. Every parser thread keeps its own, so what is kept counts once per core: at 64 MiB,
/// a 25M-row archive with CloudTrail objects of up to 50 MB peaked 230 MiB higher, for no
/// measurable gain in speed (a big object's parse outlasts its allocation by far).
pub const RETAINED_TAPE_NODES: usize = (16 << 20) / std::mem::size_of::<Node<'static>>();

/// `Err` with the reason when parsing `text` could take more than [`MAX_TAPE_PER_TEXT_BYTE`] bytes
/// of tape per byte.
pub fn check_tape_budget(text: &[u8]) -> Result<(), String> {
    check(text, UNCOUNTED_BYTES)
}

fn check(text: &[u8], uncounted_bytes: usize) -> Result<(), String> {
    if text.len() <= uncounted_bytes {
        return Ok(());
    }
    // Every node but the first follows a `,` (next element), a `[` (first element) or a `:`
    // (a value, whose key is a node too): an upper bound, as strings may hold these bytes as well.
    let mut weights = [0usize; 256];
    weights[b',' as usize] = 1;
    weights[b'[' as usize] = 1;
    weights[b':' as usize] = 2;
    let nodes = 1 + text.iter().map(|&b| weights[b as usize]).sum::<usize>();
    let bytes = nodes.saturating_mul(std::mem::size_of::<Node<'static>>());
    if bytes > text.len().saturating_mul(MAX_TAPE_PER_TEXT_BYTE) {
        return Err(format!(
            "up to {nodes} JSON values in {} bytes would take {} MiB to parse, more than \
             {MAX_TAPE_PER_TEXT_BYTE} bytes per byte of text; real log records are hundreds of bytes \
             with values tens of bytes long",
            text.len(),
            bytes >> 20,
        ));
    }
    Ok(())
}

/// Releases a tape's allocation if one object made it larger than is worth keeping.
pub fn trim(tape: Tape<'_>) -> Tape<'_> {
    if tape.0.capacity() > RETAINED_TAPE_NODES { Tape(Vec::new()) } else { tape }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_json_is_within_budget_and_tiny_values_are_not() {
        assert!(check_tape_budget(b"[1,2,3]").is_ok());
        let record = br#"{"eventTime":"2024-05-01T00:00:00Z","eventName":"DescribeInstances","requestParameters":{"maxResults":5}},"#;
        let ordinary: Vec<u8> = record.iter().copied().cycle().take(1 << 20).collect();
        assert!(check(&ordinary, 0).is_ok());
        let tiny: Vec<u8> = b"{},".iter().copied().cycle().take(400_000).collect();
        let reason = check(&tiny, 0).expect_err("a hundred thousand empty records");
        assert!(reason.contains("133334 JSON values in 400000 bytes"), "{reason}");
        // Below the counted size anything goes.
        assert!(check(&tiny, tiny.len()).is_ok());
    }

    #[test]
    fn the_bound_holds_for_what_simd_json_builds() {
        // The estimate is an upper bound on the nodes simd-json makes, for every shape of value.
        let samples: [&[u8]; 5] = [
            br#"{"Records":[{},{"a":1,"b":[1,2,{"c":null}]},[],"x"]}"#,
            br#"[[[[1]]],{"k":{"k":{"k":true}}}]"#,
            br#"{"":"","":"","":[]}"#,
            br#""just a string""#,
            br#"[1e308,-0.0,18446744073709551615]"#,
        ];
        for sample in samples {
            let mut text = sample.to_vec();
            let tape = simd_json::to_tape(&mut text).expect("valid JSON");
            let bound = 1 + sample
                .iter()
                .map(|b| match b {
                    b',' | b'[' => 1,
                    b':' => 2,
                    _ => 0,
                })
                .sum::<usize>();
            assert!(
                tape.0.len() <= bound,
                "{}: {} nodes, bound {bound}",
                String::from_utf8_lossy(sample),
                tape.0.len()
            );
        }
    }
}
