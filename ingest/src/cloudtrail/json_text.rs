//! Compact JSON text of values on a simd-json tape: how the free-form CloudTrail fields
//! (`requestParameters`, `responseElements`, ...) and unrecognised fields become column text.
//!
//! The writer walks tape nodes and appends to a caller-owned `String`, so the hot path reuses one
//! buffer instead of building a value tree or allocating per field. The output is always valid JSON:
//! strings are re-escaped (the tape holds them unescaped), and numbers that JSON cannot spell
//! (non-finite floats) are written as `null`.

use std::fmt::Write as _;

use simd_json::{Node, StaticNode};

/// Number of tape nodes the value at `at` spans: itself and everything nested in it.
pub(super) fn span(nodes: &[Node<'_>], at: usize) -> usize {
    match nodes.get(at) {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        _ => 1,
    }
}

/// The key/value pairs of the object at `at`, as (key, index of the value node).
///
/// Yields nothing if `at` is not an object. The walk trusts the tape's own counts and stops early,
/// rather than panicking, if they ever disagree with its length.
pub(super) fn entries<'t, 'i>(nodes: &'t [Node<'i>], at: usize) -> impl Iterator<Item = (&'i str, usize)> + 't {
    let len = match nodes.get(at) {
        Some(Node::Object { len, .. }) => *len,
        _ => 0,
    };
    let mut next = at + 1;
    (0..len).map_while(move |_| {
        let key = match nodes.get(next) {
            Some(Node::String(key)) => *key,
            _ => return None,
        };
        let value = next + 1;
        next = value + span(nodes, value);
        Some((key, value))
    })
}

/// The element indexes of the array at `at`; nothing if `at` is not an array.
pub(super) fn elements<'t>(nodes: &'t [Node<'_>], at: usize) -> impl Iterator<Item = usize> + 't {
    let len = match nodes.get(at) {
        Some(Node::Array { len, .. }) => *len,
        _ => 0,
    };
    let mut next = at + 1;
    (0..len).map_while(move |_| {
        let element = next;
        nodes.get(element)?;
        next = element + span(nodes, element);
        Some(element)
    })
}

/// A short human name of the JSON type of the value at `at`, for error messages.
pub(super) fn type_name(nodes: &[Node<'_>], at: usize) -> &'static str {
    match nodes.get(at) {
        Some(Node::String(_)) => "a string",
        Some(Node::Object { .. }) => "an object",
        Some(Node::Array { .. }) => "an array",
        Some(Node::Static(StaticNode::Null)) | None => "null",
        Some(Node::Static(StaticNode::Bool(_))) => "a boolean",
        Some(Node::Static(_)) => "a number",
    }
}

/// Appends the compact JSON text of the value at `at` to `out`.
///
/// Recursion depth is bounded by simd-json's own nesting limit (1024), which it enforces while
/// building the tape, so a hostile document cannot overflow the stack here.
pub(super) fn write_value(nodes: &[Node<'_>], at: usize, out: &mut String) {
    match nodes.get(at) {
        Some(Node::String(s)) => write_string(s, out),
        Some(Node::Static(value)) => write_static(value, out),
        Some(Node::Object { .. }) => {
            out.push('{');
            for (n, (key, value)) in entries(nodes, at).enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(nodes, value, out);
            }
            out.push('}');
        }
        Some(Node::Array { .. }) => {
            out.push('[');
            for (n, element) in elements(nodes, at).enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_value(nodes, element, out);
            }
            out.push(']');
        }
        None => out.push_str("null"),
    }
}

/// Appends the text of a scalar as JSON: numbers as written by Rust (shortest round-trip form).
pub(super) fn write_static(value: &StaticNode, out: &mut String) {
    match value {
        StaticNode::Null => out.push_str("null"),
        StaticNode::Bool(true) => out.push_str("true"),
        StaticNode::Bool(false) => out.push_str("false"),
        StaticNode::F64(f) if !f.is_finite() => out.push_str("null"),
        // `Debug` writes the shortest round-trip form and switches to an exponent for very large or
        // small values (`1e300`), so the text stays about as long as the source; `Display` would
        // spell out all 301 digits.
        StaticNode::F64(f) => {
            let _ = write!(out, "{f:?}");
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Appends `s` as a JSON string literal, quotes included.
pub(super) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    write_escaped(s, out);
    out.push('"');
}

/// Appends the JSON-escaped body of `s` (no quotes).
///
/// Only `"`, `\\` and control characters need escaping; everything else, non-ASCII included, is valid
/// as is in a UTF-8 JSON text, so unescaped runs are copied in one go. Most strings of CloudTrail's
/// free-form fields need no escape at all: the search for the first byte that does looks at eight
/// bytes at a time.
pub(super) fn write_escaped(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean_prefix(bytes)) {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, hence on a char boundary.
        out.push_str(s.get(run_start..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run_start = i + 1;
    }
    out.push_str(s.get(run_start..).unwrap_or_default());
}

/// How many leading bytes of `bytes`, in whole words of eight, certainly need no escape: the
/// escaping loop starts there.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `v` is zero (exact as a yes/no, although the marked byte may not be it).
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let mut clean = 0;
    for word in bytes.chunks_exact(8) {
        let v = u64::from_ne_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        // A byte below 0x20 (a control character), or equal to `"` or `\\`.
        let control = v.wrapping_sub(ONES * 0x20) & !v & HIGHS != 0;
        if control || has_zero(v ^ (ONES * u64::from(b'"'))) || has_zero(v ^ (ONES * u64::from(b'\\'))) {
            break;
        }
        clean += 8;
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserialise(json: &str) -> String {
        let mut bytes = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).expect("test input is JSON");
        let mut out = String::new();
        write_value(&tape.0, 0, &mut out);
        out
    }

    #[test]
    fn compact_text_round_trips() {
        let cases = [
            (r#"{ "a" : 1, "b": [true, false, null], "c": {} }"#, r#"{"a":1,"b":[true,false,null],"c":{}}"#),
            (r#"[]"#, r#"[]"#),
            (r#"{"n": -12, "u": 18446744073709551615, "f": 1.5}"#, r#"{"n":-12,"u":18446744073709551615,"f":1.5}"#),
            (r#"[1e300, 2.5e-9, 10.0]"#, r#"[1e300,2.5e-9,10.0]"#),
            (r#""quote \" backslash \\ newline \n tab \t""#, r#""quote \" backslash \\ newline \n tab \t""#),
            (r#""bell \u0007 nul \u0000 é 😀""#, r#""bell \u0007 nul \u0000 é 😀""#),
            (r#"{"nested":{"deeper":[{"x":"y"}]}}"#, r#"{"nested":{"deeper":[{"x":"y"}]}}"#),
            // Long enough for whole words before, at and after each escape.
            (
                r#"["arn:aws:iam::123456789012:role/Admin\"quoted\" and \\ back\u001f end é, then more text"]"#,
                r#"["arn:aws:iam::123456789012:role/Admin\"quoted\" and \\ back\u001f end é, then more text"]"#,
            ),
        ];
        for (input, expected) in cases {
            let out = reserialise(input);
            assert_eq!(out, expected, "{input}");
            // And what we write is JSON that means the same thing.
            let ours: serde_json::Value = serde_json::from_str(&out).expect("output is JSON");
            let theirs: serde_json::Value = serde_json::from_str(input).expect("input is JSON");
            assert_eq!(ours, theirs, "{input}");
        }
    }

    /// The word-at-a-time search stops at or before the first byte needing an escape, wherever
    /// it lies, and never stops early in text that needs none.
    #[test]
    fn the_clean_prefix_ends_before_the_first_escape() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789-é/:".as_bytes();
        assert_eq!(clean_prefix(base), base.len() / 8 * 8);
        for special in [b'"', b'\\', b'\n', 0x00, 0x1f, 0x08] {
            for at in 0..base.len() {
                let mut bytes = base.to_vec();
                bytes[at] = special;
                let clean = clean_prefix(&bytes);
                assert!(clean <= at && clean.is_multiple_of(8) && at - clean < 8, "{special:#x} at {at}: {clean}");
            }
        }
        // Bytes just above the specials are not mistaken for them.
        assert_eq!(clean_prefix(&[0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff]), 8);
    }

    #[test]
    fn type_names() {
        let cases = [
            ("\"s\"", "a string"),
            ("{}", "an object"),
            ("[1]", "an array"),
            ("null", "null"),
            ("true", "a boolean"),
            ("4", "a number"),
        ];
        for (input, expected) in cases {
            let mut bytes = input.as_bytes().to_vec();
            let tape = simd_json::to_tape(&mut bytes).expect("test input is JSON");
            assert_eq!(type_name(&tape.0, 0), expected, "{input}");
        }
    }
}
