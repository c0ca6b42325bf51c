//! The records of a large `{"Records":[...]}` document, found without parsing it: where each
//! record begins and ends, grouped into pieces of a few MiB that are parsed one after another.
//!
//! simd-json parses a document whole. For a 50 MB CloudTrail object (busy accounts deliver them)
//! it holds the unescaped strings, the structural index and a tape of every value at once, some
//! 200 MB beside the text itself, on each parser thread that meets such an object; freed, that
//! memory then waits out the allocator's purge delay. Parsed piece by piece, the same records
//! need a few MiB of parser memory.
//!
//! The scan follows only what it must of JSON: strings (and their escapes) and nesting. It does not
//! validate: simd-json parses every piece, and every other value of the root, and any surprise —
//! no `Records` key spelt plainly, unbalanced nesting, text after the root object — makes the scan
//! give up, and the document is parsed whole as before.

use std::ops::Range;

/// Where the records of a `{"Records":[...]}` document lie.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Split {
    /// Runs of consecutive records, in order.
    pub pieces: Vec<Piece>,
    /// The root's values other than the records, to be checked as JSON.
    pub others: Vec<Range<usize>>,
}

/// A run of consecutive records.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Piece {
    /// From the first byte of the first record to the last byte of the last, commas between
    /// records included: wrapped in `[` and `]`, it is a JSON array of those records.
    pub range: Range<usize>,
    /// How many records it holds.
    pub records: usize,
}

impl Split {
    /// Records in every piece.
    pub fn records(&self) -> usize {
        self.pieces.iter().map(|p| p.records).sum()
    }
}

/// Splits `body` (a whole document, trimmed of surrounding whitespace) into pieces of records of
/// about `piece_bytes` each, or `None` when it is not plainly an object with a `Records` array.
pub(super) fn split(body: &[u8], piece_bytes: usize) -> Option<Split> {
    let mut at = expect(body, 0, b'{')?;
    let mut records: Option<Vec<Range<usize>>> = None;
    let mut others = Vec::new();
    at = skip_space(body, at);
    if body.get(at) == Some(&b'}') {
        return None;
    }
    loop {
        let key_start = skip_space(body, at);
        let key_end = skip_string(body, key_start)?;
        at = skip_space(body, expect(body, skip_space(body, key_end), b':')?);
        let is_records = &body[key_start..key_end] == b"\"Records\"";
        if is_records && records.is_none() && body.get(at) == Some(&b'[') {
            let (elements, end) = array_elements(body, at)?;
            records = Some(elements);
            at = end;
        } else {
            let end = skip_value(body, at)?;
            others.push(at..end);
            at = end;
        }
        at = skip_space(body, at);
        match body.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => break,
            _ => return None,
        }
    }
    // Nothing may follow the root object.
    if skip_space(body, at + 1) != body.len() {
        return None;
    }
    let records = records?;
    let mut pieces = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (first byte, first record's index)
    for (n, record) in records.iter().enumerate() {
        let (first, first_index) = *start.get_or_insert((record.start, n));
        if record.end - first >= piece_bytes || n + 1 == records.len() {
            pieces.push(Piece { range: first..record.end, records: n + 1 - first_index });
            start = None;
        }
    }
    Some(Split { pieces, others })
}

/// The byte ranges of the elements of the array opening at `at`, and the index after it.
fn array_elements(body: &[u8], at: usize) -> Option<(Vec<Range<usize>>, usize)> {
    let mut elements = Vec::new();
    let mut at = skip_space(body, expect(body, at, b'[')?);
    if body.get(at) == Some(&b']') {
        return Some((elements, at + 1));
    }
    loop {
        let start = skip_space(body, at);
        let end = skip_value(body, start)?;
        elements.push(start..end);
        at = skip_space(body, end);
        match body.get(at) {
            Some(b',') => at += 1,
            Some(b']') => return Some((elements, at + 1)),
            _ => return None,
        }
    }
}

/// The index after the value starting at `at`.
fn skip_value(body: &[u8], at: usize) -> Option<usize> {
    match body.get(at)? {
        b'"' => skip_string(body, at),
        b'{' | b'[' => skip_nested(body, at),
        // A number, `true`, `false` or `null`: up to the next delimiter (simd-json checks it).
        _ => {
            let len = body[at..].iter().position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace());
            let end = at + len.unwrap_or(body.len() - at);
            (end > at).then_some(end)
        }
    }
}

/// The index after the object or array opening at `at`: nesting is counted outside strings.
fn skip_nested(body: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                i = skip_string(body, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index after the string whose opening quote is at `at`. Most of a CloudTrail document is
/// inside strings, so the closing quote is looked for with `memchr`, not byte by byte.
fn skip_string(body: &[u8], at: usize) -> Option<usize> {
    if body.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        let found = i + memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[found] == b'"' {
            return Some(found + 1);
        }
        // A backslash escapes the next byte, whatever it is (a quote, a backslash, `u`...).
        i = found + 2;
    }
}

/// The index after `byte` at `at`, if it is there.
fn expect(body: &[u8], at: usize, byte: u8) -> Option<usize> {
    (body.get(at) == Some(&byte)).then_some(at + 1)
}

/// The first index from `at` that is not JSON whitespace.
fn skip_space(body: &[u8], at: usize) -> usize {
    at + body.get(at..).unwrap_or_default().iter().take_while(|b| b.is_ascii_whitespace()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(body: &'a str, split: &Split) -> Vec<&'a str> {
        split.pieces.iter().map(|p| &body[p.range.clone()]).collect()
    }

    #[test]
    fn records_are_grouped_whole_whatever_their_strings_hold() {
        let body = r#"{ "Other": {"a": [1, "]}"]}, "Records" : [
            {"eventName": "A", "requestParameters": {"q": "\"}],{\\"}},
            {"eventName": "B", "x": [[], {}], "n": -1.5e3},
            {"eventName": "C\\", "y": null}
          ], "Tail": "x" }"#;
        let split = split(body.as_bytes(), 1).expect("a Records document");
        assert_eq!(split.records(), 3);
        assert_eq!(
            texts(body, &split),
            [
                r#"{"eventName": "A", "requestParameters": {"q": "\"}],{\\"}}"#,
                r#"{"eventName": "B", "x": [[], {}], "n": -1.5e3}"#,
                r#"{"eventName": "C\\", "y": null}"#,
            ]
        );
        let others: Vec<&str> = split.others.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(others, [r#"{"a": [1, "]}"]}"#, r#""x""#]);

        // Bigger pieces hold several records, with the commas between them.
        let split = super::split(body.as_bytes(), 60).expect("a Records document");
        assert_eq!(split.pieces.iter().map(|p| p.records).collect::<Vec<_>>(), [2, 1]);
        assert!(texts(body, &split)[0].contains("}},\n"), "{:?}", texts(body, &split));
        assert_eq!(super::split(br#"{"Records":[]}"#, 1), Some(Split { pieces: vec![], others: vec![] }));
    }

    #[test]
    fn anything_unexpected_gives_up() {
        for body in [
            r#"[{"Records":[]}]"#,
            r#"{}"#,
            r#"{"NotRecords":[{"a":1}]}"#,
            r#"{"Rec\u006frds":[{"a":1}]}"#,
            r#"{"Records":{"a":1}}"#,
            r#"{"Records":[{"a":1}]} trailing"#,
            r#"{"Records":[{"a":1}] "x": 1}"#,
            r#"{"Records":[{"a":1},]}"#,
            r#"{"Records":[{"a":"unterminated}]}"#,
            r#"{"Records":[{"a":[1}]}"#,
            r#"{"Records":[{"a":1}"#,
            r#"{"Records":[{"a":1}], "b":}"#,
        ] {
            assert_eq!(split(body.as_bytes(), 1), None, "{body}");
        }
    }
}
