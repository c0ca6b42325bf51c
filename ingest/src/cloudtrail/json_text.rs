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
/// Only `"`, `\` and control characters need escaping; everything else, non-ASCII included, is valid
/// as is in a UTF-8 JSON text, so unescaped runs are copied in one go.
pub(super) fn write_escaped(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
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
