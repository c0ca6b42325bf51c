//! A Sigma `detection` as an SQL predicate: search identifiers, their field maps and value lists,
//! the value modifiers, and the condition over them.
//!
//! A map ANDs its fields, a list of maps ORs them, a value list ORs its values (ANDs them with
//! `|all`). Each test is a definite true or false before a `not` applies to it: in SQL
//! `NOT (x = 'a')` is NULL, and the row dropped, when `x` is missing, where Sigma (like every SIEM)
//! keeps events that lack a filter's field. Value modifiers run left to right over the values:
//! `wide`/`utf16*` encode, `base64`/`base64offset` encode, `windash` multiplies dashes, and
//! `contains`/`startswith`/`endswith` add wildcards; `re`, `cidr`, `exists`, `fieldref` and the
//! comparisons choose another kind of test. What bunker cannot evaluate faithfully (keyword
//! searches, `expand` placeholders, an unknown modifier) is refused with the reason.

use base64::Engine as _;
use bunker_schemas::LogTable;
use serde_yaml_ng::Value;

use super::condition::{self, Condition};
use super::fields::{self, Column, Kind};
use super::pattern::{Pattern, quote};

/// How many values `windash` may make of one: each dash position multiplies them by five.
const WINDASH_LIMIT: usize = 625;

/// The SQL predicate of a `detection` section over `table`.
pub fn predicate(detection: &serde_yaml_ng::Mapping, table: LogTable) -> Result<String, String> {
    let mut names = Vec::new();
    let mut searches = std::collections::HashMap::new();
    let mut conditions = Vec::new();
    for (key, value) in detection {
        let key = key.as_str().ok_or_else(|| format!("detection has a key that is not text: {key:?}"))?;
        match key {
            "condition" => conditions = condition_texts(value)?,
            "timeframe" => {
                return Err("detection uses the obsolete `timeframe`; write it as a Sigma correlation rule".into());
            }
            name => {
                let sql = search(value, table).map_err(|e| format!("search identifier {name:?}: {e}"))?;
                names.push(name.to_owned());
                searches.insert(name.to_owned(), sql);
            }
        }
    }
    if conditions.is_empty() {
        return Err("detection has no condition".into());
    }
    let mut parts = Vec::new();
    for text in &conditions {
        let parsed = condition::parse(text, &names)?;
        parts.push(render(&parsed, &searches));
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { format!("({})", parts.join(") OR (")) })
}

/// A condition is one expression or a list of them (ORed).
fn condition_texts(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Sequence(items) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| "a condition in the list is not text".to_owned())
            })
            .collect(),
        _ => Err("condition must be an expression or a list of them".into()),
    }
}

fn render(condition: &Condition, searches: &std::collections::HashMap<String, String>) -> String {
    match condition {
        Condition::Search(name) => searches[name].clone(),
        Condition::Not(inner) => format!("NOT coalesce({}, false)", render(inner, searches)),
        Condition::All(parts) => {
            let parts: Vec<String> = parts.iter().map(|p| render(p, searches)).collect();
            format!("({})", parts.join(" AND "))
        }
        Condition::Any(parts) => {
            let parts: Vec<String> = parts.iter().map(|p| render(p, searches)).collect();
            format!("({})", parts.join(" OR "))
        }
    }
}

/// One search identifier's value: a map of fields, or a list of maps.
fn search(value: &Value, table: LogTable) -> Result<String, String> {
    match value {
        Value::Mapping(map) => fields_map(map, table),
        Value::Sequence(items) if !items.is_empty() && items.iter().all(|item| item.is_mapping()) => {
            let maps = items
                .iter()
                .map(|item| fields_map(item.as_mapping().expect("checked"), table))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(format!("({})", maps.join(" OR ")))
        }
        Value::Sequence(_) | Value::String(_) | Value::Number(_) => {
            Err("is a keyword search (values without a field), which needs the raw event text; bunker's tables keep \
             fields, so name the field the keyword is expected in"
                .into())
        }
        _ => Err("must be a map of fields or a list of such maps".into()),
    }
}

fn fields_map(map: &serde_yaml_ng::Mapping, table: LogTable) -> Result<String, String> {
    if map.is_empty() {
        return Err("is an empty map".into());
    }
    let items = map
        .iter()
        .map(|(key, value)| {
            let key = key.as_str().ok_or_else(|| format!("has a field key that is not text: {key:?}"))?;
            item(key, value, table).map_err(|e| format!("{key}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(if items.len() == 1 { items.into_iter().next().expect("one") } else { format!("({})", items.join(" AND ")) })
}

/// What the modifiers of one field ask for.
#[derive(Debug, Default)]
struct Modifiers {
    /// Value transformations, in order.
    transforms: Vec<Transform>,
    all: bool,
    cased: bool,
    negate: bool,
    test: Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    Contains,
    StartsWith,
    EndsWith,
    Base64,
    Base64Offset,
    Utf16Le,
    Utf16Be,
    Utf16Bom,
    Windash,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Test {
    /// String patterns (the default).
    #[default]
    Pattern,
    /// A regular expression with its flags (`i`, `m`, `s`).
    Regex(String),
    /// The address lies in a CIDR block.
    Cidr,
    /// The field is there, or not.
    Exists,
    /// The field equals (or contains, starts or ends with) another field.
    FieldRef,
    /// A numeric comparison.
    Compare(&'static str),
    /// A part of a time (`hour`, `day`, …) equals the value.
    TimePart(&'static str),
}

fn modifiers(names: &[&str]) -> Result<Modifiers, String> {
    let mut m = Modifiers::default();
    let set_test = |m: &mut Modifiers, test: Test, name: &str| {
        if m.test != Test::Pattern {
            return Err(format!("modifier {name:?} cannot follow another kind of test"));
        }
        m.test = test;
        Ok(())
    };
    for name in names {
        match name.to_ascii_lowercase().as_str() {
            "contains" => m.transforms.push(Transform::Contains),
            "startswith" => m.transforms.push(Transform::StartsWith),
            "endswith" => m.transforms.push(Transform::EndsWith),
            "base64" => m.transforms.push(Transform::Base64),
            "base64offset" => m.transforms.push(Transform::Base64Offset),
            "wide" | "utf16le" => m.transforms.push(Transform::Utf16Le),
            "utf16be" => m.transforms.push(Transform::Utf16Be),
            "utf16" => m.transforms.push(Transform::Utf16Bom),
            "windash" => m.transforms.push(Transform::Windash),
            "all" => m.all = true,
            "cased" => m.cased = true,
            "neq" => m.negate = true,
            "re" => set_test(&mut m, Test::Regex(String::new()), name)?,
            flag @ ("i" | "ignorecase" | "m" | "multiline" | "s" | "dotall") => match &mut m.test {
                Test::Regex(flags) => flags.push(flag.chars().next().expect("flag")),
                _ => return Err(format!("modifier {name:?} goes after `re`")),
            },
            "cidr" => set_test(&mut m, Test::Cidr, name)?,
            "exists" => set_test(&mut m, Test::Exists, name)?,
            "fieldref" => set_test(&mut m, Test::FieldRef, name)?,
            "lt" => set_test(&mut m, Test::Compare("<"), name)?,
            "lte" => set_test(&mut m, Test::Compare("<="), name)?,
            "gt" => set_test(&mut m, Test::Compare(">"), name)?,
            "gte" => set_test(&mut m, Test::Compare(">="), name)?,
            part @ ("minute" | "hour" | "day" | "week" | "month" | "year") => {
                let part = match part {
                    "minute" => "minute",
                    "hour" => "hour",
                    "day" => "day",
                    "week" => "week",
                    "month" => "month",
                    _ => "year",
                };
                set_test(&mut m, Test::TimePart(part), name)?
            }
            "expand" => {
                return Err("uses `expand`, whose %placeholder% bunker has no value for; replace the placeholder \
                            with the values it stands for"
                    .into());
            }
            other => return Err(format!("unknown modifier {other:?}")),
        }
    }
    let transforms_allowed = matches!(m.test, Test::Pattern)
        || (m.test == Test::FieldRef
            && m.transforms
                .iter()
                .all(|t| matches!(t, Transform::Contains | Transform::StartsWith | Transform::EndsWith))
            && m.transforms.len() <= 1);
    if !m.transforms.is_empty() && !transforms_allowed {
        return Err("value modifiers such as contains or base64 do not combine with this kind of test".into());
    }
    Ok(m)
}

/// One `field|modifiers: value(s)` entry.
fn item(key: &str, value: &Value, table: LogTable) -> Result<String, String> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    let names: Vec<&str> = parts.collect();
    if name.is_empty() {
        return Err("is a keyword search (no field name), which needs the raw event text bunker does not keep".into());
    }
    let modifiers = modifiers(&names)?;
    let column = fields::resolve(table, name)?;
    let values: Vec<&Value> = match value {
        Value::Sequence(items) if items.is_empty() => vec![&Value::Null],
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    if modifiers.all && values.len() < 2 {
        return Err("`all` needs a list of values".into());
    }
    let mut tests = Vec::new();
    for value in values {
        tests.extend(value_tests(&column, value, &modifiers, table)?);
    }
    let joined = if tests.len() == 1 {
        tests.remove(0)
    } else if modifiers.all {
        format!("({})", tests.join(" AND "))
    } else {
        any_of(&column, tests, &modifiers)
    };
    Ok(if modifiers.negate { format!("NOT coalesce({joined}, false)") } else { joined })
}

/// An OR of tests; equalities on one field become one `IN`.
fn any_of(column: &Column, tests: Vec<String>, modifiers: &Modifiers) -> String {
    let lhs = if modifiers.cased { column.text() } else { format!("lower({})", column.text()) };
    let prefix = format!("{lhs} = ");
    let literals: Option<Vec<&str>> = tests.iter().map(|t| t.strip_prefix(&prefix)).collect();
    match literals {
        Some(literals) if literals.iter().all(|l| l.starts_with('\'')) => format!("{lhs} IN ({})", literals.join(", ")),
        _ => format!("({})", tests.join(" OR ")),
    }
}

/// The tests one value makes (more than one when a modifier multiplies it).
fn value_tests(column: &Column, value: &Value, m: &Modifiers, table: LogTable) -> Result<Vec<String>, String> {
    if let Value::Null = value {
        return match m.test {
            Test::Pattern if m.transforms.is_empty() => Ok(vec![format!("{} IS NULL", column.sql)]),
            _ => Err("null goes without modifiers".into()),
        };
    }
    let text = scalar_text(value)?;
    match &m.test {
        Test::Exists => match value {
            Value::Bool(true) => Ok(vec![format!("{} IS NOT NULL", column.sql)]),
            Value::Bool(false) => Ok(vec![format!("{} IS NULL", column.sql)]),
            _ => Err("`exists` takes true or false".into()),
        },
        Test::Regex(flags) => {
            let pattern = if flags.is_empty() { text } else { format!("(?{flags}){text}") };
            regex::Regex::new(&pattern).map_err(|e| format!("regular expression {pattern:?} does not compile: {e}"))?;
            Ok(vec![format!("regexp_like({}, {})", column.text(), quote(&pattern))])
        }
        Test::Cidr => {
            text.parse::<ipnet::IpNet>().map_err(|_| format!("{text:?} is not a CIDR block"))?;
            Ok(vec![format!("cidr_contains({}, {})", quote(&text), column.text())])
        }
        Test::Compare(op) => {
            let number: f64 = text.parse().map_err(|_| format!("{text:?} is not a number to compare with"))?;
            Ok(vec![format!("{} {op} {number}", column.number())])
        }
        Test::TimePart(part) => {
            if column.kind != Kind::Timestamp {
                return Err(format!("`{part}` compares a part of a time, and this field is not a time"));
            }
            let number: i64 = text.parse().map_err(|_| format!("{text:?} is not a whole number"))?;
            Ok(vec![format!("date_part('{part}', {}) = {number}", column.sql)])
        }
        Test::FieldRef => {
            let other = fields::resolve(table, &text)?;
            let (a, b) = if m.cased {
                (column.text(), other.text())
            } else {
                (format!("lower({})", column.text()), format!("lower({})", other.text()))
            };
            Ok(vec![match m.transforms.first() {
                None => format!("{a} = {b}"),
                Some(Transform::Contains) => format!("strpos({a}, {b}) > 0"),
                Some(Transform::StartsWith) => format!("starts_with({a}, {b})"),
                Some(_) => format!("ends_with({a}, {b})"),
            }])
        }
        Test::Pattern => {
            if column.kind == Kind::Boolean && m.transforms.is_empty() {
                if let Some(flag) = boolean(&text) {
                    return Ok(vec![format!("{} = {flag}", column.sql)]);
                }
            }
            let patterns = transformed(&text, &m.transforms)?;
            Ok(patterns.iter().map(|p| p.sql(&column.text(), m.cased)).collect())
        }
    }
}

fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A scalar value as the text it is matched as.
fn scalar_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => Err(format!("{value:?} is not a value a field can be compared with")),
    }
}

/// What a value becomes under its transformations.
#[derive(Debug, Clone)]
enum Stage {
    Text(Pattern),
    Bytes(Vec<u8>),
}

fn transformed(text: &str, transforms: &[Transform]) -> Result<Vec<Pattern>, String> {
    let mut stages = vec![Stage::Text(Pattern::parse(text))];
    for transform in transforms {
        let mut next = Vec::new();
        for stage in stages {
            match (transform, stage) {
                (Transform::Contains, Stage::Text(p)) => next.push(Stage::Text(p.any_before().any_after())),
                (Transform::StartsWith, Stage::Text(p)) => next.push(Stage::Text(p.any_after())),
                (Transform::EndsWith, Stage::Text(p)) => next.push(Stage::Text(p.any_before())),
                (Transform::Utf16Le | Transform::Utf16Be | Transform::Utf16Bom, Stage::Text(p)) => {
                    let text = p.as_text().ok_or("wide/utf16 values cannot hold wildcards")?;
                    let units = text.encode_utf16();
                    let bytes: Vec<u8> = match transform {
                        Transform::Utf16Be => units.flat_map(u16::to_be_bytes).collect(),
                        Transform::Utf16Bom => {
                            [0xFF, 0xFE].into_iter().chain(units.flat_map(u16::to_le_bytes)).collect()
                        }
                        _ => units.flat_map(u16::to_le_bytes).collect(),
                    };
                    next.push(Stage::Bytes(bytes));
                }
                (Transform::Base64 | Transform::Base64Offset, stage) => {
                    let bytes = match stage {
                        Stage::Bytes(bytes) => bytes,
                        Stage::Text(p) => p.as_text().ok_or("base64 values cannot hold wildcards")?.into_bytes(),
                    };
                    if *transform == Transform::Base64 {
                        next.push(Stage::Text(Pattern::literal(
                            &base64::engine::general_purpose::STANDARD.encode(&bytes),
                        )));
                    } else {
                        next.extend(base64_offsets(&bytes).into_iter().map(|t| Stage::Text(Pattern::literal(&t))));
                    }
                }
                (Transform::Windash, Stage::Text(p)) => {
                    let text = p.as_text().ok_or("windash values cannot hold wildcards")?;
                    let dashed = windash(&text)?;
                    next.extend(dashed.iter().map(|t| Stage::Text(Pattern::parse(t))));
                }
                (_, Stage::Bytes(_)) => {
                    return Err("an encoded value must be base64-encoded before it is matched".into());
                }
            }
        }
        stages = next;
    }
    stages
        .into_iter()
        .map(|stage| match stage {
            Stage::Text(p) => Ok(p),
            Stage::Bytes(_) => Err("an encoded value must be base64-encoded before it is matched".to_owned()),
        })
        .collect()
}

/// The three base64 texts that find `bytes` at any offset inside a longer base64 text: the
/// encoding of the value shifted by 0, 1 and 2 bytes, without the characters that depend on
/// the bytes around it.
fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    let engine = base64::engine::general_purpose::STANDARD;
    (0..3)
        .map(|shift| {
            let mut padded = vec![b' '; shift];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let cut_end = match (bytes.len() + shift) % 3 {
                1 => 3,
                2 => 2,
                _ => 0,
            };
            let end = encoded.len().saturating_sub(cut_end);
            encoded.get(START[shift]..end).unwrap_or_default().to_owned()
        })
        .collect()
}

/// `text` with every dash that starts a flag (`-x` or `/x` after a non-word character or at the
/// start) written each of the five ways Windows accepts.
fn windash(text: &str) -> Result<Vec<String>, String> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let chars: Vec<char> = text.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut variants = vec![String::new()];
    for (at, &c) in chars.iter().enumerate() {
        let flag_start = matches!(c, '-' | '/')
            && at.checked_sub(1).is_none_or(|before| !is_word(chars[before]))
            && chars.get(at + 1).is_some_and(|&next| is_word(next));
        if flag_start {
            variants = variants.iter().flat_map(|v| DASHES.iter().map(move |d| format!("{v}{d}"))).collect();
            if variants.len() > WINDASH_LIMIT {
                return Err(format!("windash makes more than {WINDASH_LIMIT} values of {text:?}"));
            }
        } else {
            for v in &mut variants {
                v.push(c);
            }
        }
    }
    Ok(variants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<String, String> {
        let detection: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(yaml).expect("yaml");
        predicate(&detection, LogTable::CloudTrail)
    }

    #[test]
    fn maps_lists_and_conditions_become_sql() {
        let sql = compile(
            "selection:\n  eventSource: cloudtrail.amazonaws.com\n  eventName: [StopLogging, DeleteTrail]\nfilter:\n  userIdentity.type: AWSService\ncondition: selection and not filter\n",
        )
        .expect("sql");
        assert_eq!(
            sql,
            "((lower(eventsource) = 'cloudtrail.amazonaws.com' AND lower(eventname) IN ('stoplogging', 'deletetrail')) \
             AND NOT coalesce(lower(useridentity.type) = 'awsservice', false))"
        );
        let sql = compile("a:\n  - eventName: A\n  - sourceIPAddress: AWS Internal\ncondition: a\n").expect("sql");
        assert_eq!(sql, "(lower(eventname) = 'a' OR lower(sourceipaddress) = 'aws internal')");
    }

    #[test]
    fn modifiers_become_tests() {
        let one = |item: &str| compile(&format!("s:\n  {item}\ncondition: s\n"));
        assert_eq!(one("errorCode: null"), Ok("errorcode IS NULL".into()));
        assert_eq!(one("errorCode: []"), Ok("errorcode IS NULL".into()));
        assert_eq!(one("userAgent|contains: trufflehog"), Ok("useragent ILIKE '%trufflehog%' ESCAPE '\\'".into()));
        assert_eq!(one("eventName|startswith: Update"), Ok("eventname ILIKE 'Update%' ESCAPE '\\'".into()));
        assert_eq!(one("eventName|endswith|cased: Policy"), Ok("eventname LIKE '%Policy' ESCAPE '\\'".into()));
        assert_eq!(
            one("requestParameters|contains|all: ['\"a\"', b]"),
            Ok("(requestparameters ILIKE '%\"a\"%' ESCAPE '\\' AND requestparameters ILIKE '%b%' ESCAPE '\\')".into())
        );
        assert_eq!(
            one("userIdentity.arn|re: '.+:assumed-role/aws:.+'"),
            Ok("regexp_like(useridentity.arn, '.+:assumed-role/aws:.+')".into())
        );
        assert_eq!(one("userIdentity.arn|re|i: 'admin'"), Ok("regexp_like(useridentity.arn, '(?i)admin')".into()));
        assert_eq!(one("sourceIPAddress|cidr: 10.0.0.0/8"), Ok("cidr_contains('10.0.0.0/8', sourceipaddress)".into()));
        assert_eq!(one("errorCode|exists: true"), Ok("errorcode IS NOT NULL".into()));
        assert_eq!(
            one("userIdentity.arn|fieldref: requestParameters.userName"),
            Ok("lower(useridentity.arn) = lower(json_path_text(requestparameters, 'userName'))".into())
        );
        assert_eq!(
            one("userIdentity.arn|fieldref|endswith: requestParameters.userName"),
            Ok("ends_with(lower(useridentity.arn), lower(json_path_text(requestparameters, 'userName')))".into())
        );
        assert_eq!(one("readOnly: 'false'"), Ok("readonly = false".into()));
        assert_eq!(one("eventTime|hour: 3"), Ok("date_part('hour', eventtime) = 3".into()));
        assert_eq!(one("errorCode|neq: [A, B]"), Ok("NOT coalesce(lower(errorcode) IN ('a', 'b'), false)".into()));
        assert_eq!(
            one("requestParameters.n|gte: 5"),
            Ok("TRY_CAST(json_path_text(requestparameters, 'n') AS DOUBLE) >= 5".into())
        );
        assert_eq!(one("userAgent|base64: abc"), Ok("lower(useragent) = 'ywjj'".into()));
    }

    #[test]
    fn encodings_follow_the_modifier_appendix() {
        // `|base64offset|contains` of "sigma" finds it at any of the three offsets.
        assert_eq!(base64_offsets(b"sigma"), ["c2lnbW", "NpZ21h", "zaWdtY"]);
        let wide = transformed("cmd", &[Transform::Utf16Le, Transform::Base64]).expect("wide");
        assert_eq!(wide[0].as_text().as_deref(), Some("YwBtAGQA"));
        let dashes = windash("-exec /c x-y").expect("windash");
        assert_eq!(dashes.len(), 25);
        assert!(dashes.contains(&"\u{2013}exec \u{2014}c x-y".to_owned()), "{dashes:?}");
    }

    #[test]
    fn what_bunker_cannot_evaluate_is_refused_with_the_reason() {
        let err = |yaml: &str| compile(yaml).unwrap_err();
        assert!(err("k:\n  - mimikatz\ncondition: k\n").contains("keyword search"));
        assert!(err("s:\n  '|contains': x\ncondition: s\n").contains("keyword search"));
        assert!(err("s:\n  src_ip|expand: '%Jump%'\ncondition: s\n").contains("expand"));
        assert!(err("s:\n  eventName|sounds_like: x\ncondition: s\n").contains("unknown modifier \"sounds_like\""));
        assert!(err("s:\n  status: x\ncondition: s\n").contains("\"status\" is not in the cloudtrail table"));
        assert!(err("s:\n  eventName|all: x\ncondition: s\n").contains("`all` needs a list"));
        assert!(err("s:\n  eventName|re: '(?<=a)b'\ncondition: s\n").contains("does not compile"));
        assert!(err("s:\n  eventName: x\ntimeframe: 5m\ncondition: s\n").contains("timeframe"));
        assert!(err("s:\n  eventName: x\n").contains("no condition"));
        assert!(err("s:\n  eventName|cidr: nope\ncondition: s\n").contains("CIDR"));
    }
}
