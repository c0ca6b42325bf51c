//! Athena's (Presto/Trino's) names and semantics for the functions analysts paste from AWS's
//! example queries, where DataFusion has none or a different one: `date_add('day', 1, ts)`,
//! `date_diff('second', a, b)`, `from_iso8601_timestamp`, `to_iso8601`, `from_unixtime`,
//! `parse_datetime` (Joda patterns), `date_parse` / `date_format` (MySQL patterns), `year()`,
//! `hour()`, `day_of_week()`..., `date()`, two-argument `replace`, `regexp_extract`,
//! `url_extract_host`, the JSON array functions, `contains` / `element_at` over arrays, and the
//! aggregates `count_if`, `arbitrary` and `approx_percentile`.
//!
//! Values enter as Arrow arrays and leave as Arrow arrays. Every timestamp comes out as
//! `Timestamp(Microsecond, "UTC")`, the type of every time column in the lake. Where Athena's
//! tables hold text and bunker's hold timestamps (`eventtime`, `query_timestamp`, flow `start`),
//! the parsing functions take the timestamp as it is, so the documented queries run unchanged.
//! A NULL argument gives NULL; a bad unit or pattern is an error naming the function, as in Athena.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, Timelike, Utc};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    create_udaf,
};

/// Registers every Athena-compatible function with a registry (after DataFusion's own, which some
/// of them replace: `date_format`, `from_unixtime`, `replace`, `contains`, `element_at`).
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    use Presto as P;
    let scalars: Vec<ScalarUDF> = vec![
        P::udf("date_add", 3, ts_type(), date_add),
        P::udf("date_diff", 3, DataType::Int64, date_diff),
        P::udf("from_iso8601_timestamp", 1, ts_type(), |a| to_timestamps("from_iso8601_timestamp", &a[0])),
        P::udf("to_iso8601", 1, DataType::Utf8, to_iso8601),
        P::udf("from_unixtime", 1, ts_type(), from_unixtime),
        P::udf("parse_datetime", 2, ts_type(), |a| parse_with("parse_datetime", a, joda_to_chrono)),
        P::udf("date_parse", 2, ts_type(), |a| parse_with("date_parse", a, mysql_to_chrono)),
        P::udf("date_format", 2, DataType::Utf8, date_format),
        P::udf("date", 1, DataType::Date32, date),
        P::udf("regexp_extract", -1, DataType::Utf8, regexp_extract),
        P::udf("url_extract_host", 1, DataType::Utf8, url_extract_host),
        P::udf("json_array_length", 1, DataType::Int64, json_array_length),
        P::udf("json_array_contains", 2, DataType::Boolean, json_array_contains),
        P::udf("json_parse", 1, DataType::Utf8, |a| json_text("json_parse", &a[0])),
        P::udf("json_format", 1, DataType::Utf8, |a| json_text("json_format", &a[0])),
        P::udf("replace", -1, DataType::Utf8, replace),
    ];
    for udf in scalars {
        registry.register_udf(Arc::new(udf))?;
    }
    for field in FIELDS {
        registry.register_udf(Arc::new(P::udf(field.0, 1, DataType::Int64, move |a| date_field(field, &a[0]))))?;
    }
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(ListOr::contains())))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(ListOr::element_at())))?;
    registry.register_udaf(Arc::new(count_if()))?;
    let first = datafusion::functions_aggregate::first_last::first_value_udaf();
    registry.register_udaf(Arc::new(first.as_ref().clone().with_aliases(["arbitrary"])))?;
    let percentile = datafusion::functions_aggregate::approx_percentile_cont::approx_percentile_cont_udaf();
    registry.register_udaf(Arc::new(percentile.as_ref().clone().with_aliases(["approx_percentile"])))?;
    Ok(())
}

/// Names of the Athena functions this module adds or changes, with what they do, for `\df`.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("date_add('day', 1, ts)", "Athena's argument order; units millisecond..year"),
    ("date_diff('second', a, b)", "b - a in whole units, as a BIGINT"),
    ("from_iso8601_timestamp(text)", "ISO 8601 text as a UTC timestamp (a timestamp passes through)"),
    ("to_iso8601(ts)", "2025-03-01T10:20:30.000Z"),
    ("from_unixtime(seconds)", "epoch seconds as a UTC timestamp (a timestamp passes through)"),
    ("parse_datetime(text, 'yyyy-MM-dd')", "text in a Joda pattern as a UTC timestamp"),
    ("date_parse(text, '%Y-%m-%d') / date_format(ts, ...)", "MySQL patterns (%i minutes, %s seconds)"),
    ("year(ts), month, day, hour, minute, second, day_of_week, day_of_year, quarter, week", "parts, BIGINT"),
    ("count_if(cond), arbitrary(x), approx_percentile(x, p)", "Athena's aggregates"),
    ("regexp_extract(s, re[, group]), url_extract_host(url)", "first match (or group); the URL's host"),
    ("json_array_length(j), json_array_contains(j, v), json_parse, json_format", "JSON text arrays"),
    ("contains(array, x), element_at(array, i)", "array membership; 1-based element (NULL past the end)"),
];

/// The timestamp type every function here returns.
fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

type Kernel = dyn Fn(&[ArrayRef]) -> Result<ArrayRef> + Send + Sync;

/// A scalar function computed over whole arrays (scalars are expanded to the batch's length).
struct Presto {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    kernel: Box<Kernel>,
}

impl std::fmt::Debug for Presto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presto").field("name", &self.name).finish()
    }
}

impl PartialEq for Presto {
    fn eq(&self, other: &Presto) -> bool {
        self.name == other.name
    }
}

impl Eq for Presto {}

impl std::hash::Hash for Presto {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl Presto {
    /// The function; `arity` -1 takes any number of arguments.
    fn udf(
        name: &'static str,
        arity: i32,
        returns: DataType,
        kernel: impl Fn(&[ArrayRef]) -> Result<ArrayRef> + Send + Sync + 'static,
    ) -> ScalarUDF {
        let signature = match usize::try_from(arity) {
            Ok(n) => Signature::any(n, Volatility::Immutable),
            Err(_) => Signature::variadic_any(Volatility::Immutable),
        };
        ScalarUDF::new_from_impl(Presto { name, signature, returns, kernel: Box::new(kernel) })
    }
}

impl ScalarUDFImpl for Presto {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let out = (self.kernel)(&arrays)?;
        Ok(match all_scalar {
            true => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            false => ColumnarValue::Array(out),
        })
    }
}

/// Text of any string type (a NULL literal is a column of NULL text).
fn text(name: &str, array: &ArrayRef) -> Result<StringArray> {
    match array.data_type() {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
            Ok(arrow::compute::cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
        }
        other => exec_err!("{name}: expected text, got {other}"),
    }
}

/// A constant text argument (a unit or a pattern).
fn constant<'a>(name: &str, what: &str, array: &'a StringArray) -> Result<Option<&'a str>> {
    if array.is_empty() || array.is_null(0) {
        return Ok(None);
    }
    let first = array.value(0);
    if array.iter().any(|v| v.is_some_and(|v| v != first)) {
        return exec_err!("{name}: the {what} must be a constant");
    }
    Ok(Some(first))
}

/// Timestamps of any unit or zone, dates, or ISO 8601 text, as UTC microseconds.
fn to_timestamps(name: &str, array: &ArrayRef) -> Result<ArrayRef> {
    let out = match array.data_type() {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null => {
            arrow::compute::cast(array, &ts_type())?
        }
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let options = arrow::compute::CastOptions { safe: false, ..Default::default() };
            arrow::compute::cast_with_options(array, &ts_type(), &options)
                .map_err(|e| DataFusionError::Execution(format!("{name}: {e}")))?
        }
        other => return exec_err!("{name}: expected a timestamp or ISO 8601 text, got {other}"),
    };
    Ok(out)
}

fn micros(name: &str, array: &ArrayRef) -> Result<TimestampMicrosecondArray> {
    Ok(to_timestamps(name, array)?.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().clone())
}

fn utc(name: &str, us: i64) -> Result<DateTime<Utc>> {
    match DateTime::from_timestamp_micros(us) {
        Some(t) => Ok(t),
        None => exec_err!("{name}: timestamp {us} µs is out of range"),
    }
}

fn timestamps(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// A unit of `date_add` / `date_diff`, as Athena spells them (case-insensitive, singular).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Fixed(i64),
    Months(i64),
}

fn unit(name: &str, text: &str) -> Result<Unit> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "millisecond" => Unit::Fixed(1_000),
        "second" => Unit::Fixed(1_000_000),
        "minute" => Unit::Fixed(60_000_000),
        "hour" => Unit::Fixed(3_600_000_000),
        "day" => Unit::Fixed(86_400_000_000),
        "week" => Unit::Fixed(7 * 86_400_000_000),
        "month" => Unit::Months(1),
        "quarter" => Unit::Months(3),
        "year" => Unit::Months(12),
        _ => {
            return exec_err!(
                "{name}: {text:?} is not a unit (millisecond, second, minute, hour, day, week, month, quarter, year)"
            );
        }
    })
}

/// `date_add(unit, value, timestamp)`.
fn date_add(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "date_add";
    let units = text(NAME, &args[0])?;
    let Some(unit_text) = constant(NAME, "unit", &units)? else {
        return Ok(timestamps(vec![None; args[2].len()]));
    };
    let unit = unit(NAME, unit_text)?;
    let amounts = arrow::compute::cast(&args[1], &DataType::Int64)?;
    let amounts = amounts.as_primitive::<Int64Type>();
    let times = micros(NAME, &args[2])?;
    let mut out = Vec::with_capacity(times.len());
    for (amount, time) in amounts.iter().zip(times.iter()) {
        let (Some(amount), Some(time)) = (amount, time) else {
            out.push(None);
            continue;
        };
        let shifted = match unit {
            Unit::Fixed(step) => amount.checked_mul(step).and_then(|d| time.checked_add(d)),
            Unit::Months(per) => {
                let t = utc(NAME, time)?;
                let months = amount.checked_mul(per).and_then(|m| u32::try_from(m.unsigned_abs()).ok());
                let moved = match months {
                    Some(m) if amount >= 0 => t.checked_add_months(Months::new(m)),
                    Some(m) => t.checked_sub_months(Months::new(m)),
                    None => None,
                };
                moved.map(|t| t.timestamp_micros())
            }
        };
        match shifted {
            Some(v) => out.push(Some(v)),
            None => return exec_err!("{NAME}: adding {amount} {unit_text} overflows"),
        }
    }
    Ok(timestamps(out))
}

/// `date_diff(unit, a, b)`: whole units from a to b (negative when b is earlier).
fn date_diff(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "date_diff";
    let units = text(NAME, &args[0])?;
    let Some(unit_text) = constant(NAME, "unit", &units)? else {
        return Ok(Arc::new(Int64Array::from(vec![None; args[1].len()])));
    };
    let unit = unit(NAME, unit_text)?;
    let (from, to) = (micros(NAME, &args[1])?, micros(NAME, &args[2])?);
    let mut out = Vec::with_capacity(from.len());
    for (a, b) in from.iter().zip(to.iter()) {
        let (Some(a), Some(b)) = (a, b) else {
            out.push(None);
            continue;
        };
        out.push(Some(match unit {
            // Integer division truncates toward zero, as Athena's does.
            Unit::Fixed(step) => (b - a) / step,
            Unit::Months(per) => months_between(utc(NAME, a)?, utc(NAME, b)?) / per,
        }));
    }
    Ok(Arc::new(Int64Array::from(out)))
}

/// Complete calendar months from a to b.
fn months_between(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
    let index = |t: DateTime<Utc>| i64::from(t.year()) * 12 + i64::from(t.month0());
    let mut months = index(b) - index(a);
    // The rest of the month position (day, then time of day) decides whether the last is complete.
    let rest = |t: DateTime<Utc>| (t.day(), t.num_seconds_from_midnight(), t.nanosecond());
    if months > 0 && rest(b) < rest(a) {
        months -= 1;
    } else if months < 0 && rest(b) > rest(a) {
        months += 1;
    }
    months
}

/// `to_iso8601(ts)`: milliseconds and `Z`, as Athena prints a UTC timestamp; a date as a date.
fn to_iso8601(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "to_iso8601";
    if let DataType::Date32 = args[0].data_type() {
        return Ok(arrow::compute::cast(&args[0], &DataType::Utf8)?);
    }
    let times = micros(NAME, &args[0])?;
    let mut out = Vec::with_capacity(times.len());
    for t in times.iter() {
        out.push(match t {
            Some(t) => Some(utc(NAME, t)?.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            None => None,
        });
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// `from_unixtime(seconds)`; fractional seconds keep their microseconds.
fn from_unixtime(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "from_unixtime";
    let seconds = match args[0].data_type() {
        DataType::Timestamp(..) | DataType::Date32 => return to_timestamps(NAME, &args[0]),
        t if t.is_numeric() || t.is_null() => arrow::compute::cast(&args[0], &DataType::Float64)?,
        other => return exec_err!("{NAME}: expected epoch seconds, got {other}"),
    };
    let seconds = seconds.as_primitive::<arrow::datatypes::Float64Type>();
    Ok(timestamps(seconds.iter().map(|s| s.map(|s| (s * 1e6).round() as i64))))
}

/// Parses text in `pattern` (translated to chrono's by `translate`) as UTC.
fn parse_with(name: &str, args: &[ArrayRef], translate: fn(&str) -> Result<String, String>) -> Result<ArrayRef> {
    if matches!(args[0].data_type(), DataType::Timestamp(..)) {
        return to_timestamps(name, &args[0]);
    }
    let values = text(name, &args[0])?;
    let patterns = text(name, &args[1])?;
    let Some(pattern) = constant(name, "pattern", &patterns)? else {
        return Ok(timestamps(vec![None; values.len()]));
    };
    let format = translate(pattern).map_err(|why| DataFusionError::Execution(format!("{name}: {why}")))?;
    let mut out = Vec::with_capacity(values.len());
    for value in values.iter() {
        let Some(value) = value else {
            out.push(None);
            continue;
        };
        let parsed = DateTime::parse_from_str(value, &format)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(value, &format).map(|t| t.and_utc()))
            .or_else(|_| NaiveDate::parse_from_str(value, &format).map(|d| d.and_time(Default::default()).and_utc()));
        match parsed {
            Ok(t) => out.push(Some(t.timestamp_micros())),
            Err(e) => return exec_err!("{name}: {value:?} does not match {pattern:?}: {e}"),
        }
    }
    Ok(timestamps(out))
}

/// A Joda-Time pattern (`yyyy-MM-dd'T'HH:mm:ss`) as a chrono format.
fn joda_to_chrono(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        if c == '\'' {
            // '' is a quote; 'text' is literal text (in which '' is a quote too).
            if run >= 2 {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('\''), Some('\'')) => {
                        out.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => {
                        i += 1;
                        break;
                    }
                    (Some(&c), _) => {
                        push_literal(&mut out, c);
                        i += 1;
                    }
                    // Joda reads an unclosed quote as literal text to the end, and AWS's
                    // Resolver example (`...ss''Z'` in SQL) relies on it.
                    (None, _) => break,
                }
            }
            continue;
        }
        let spec = match (c, run) {
            ('y' | 'Y' | 'x', 2) => "%y",
            ('y' | 'Y' | 'x', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => "%.f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', _) => "%z",
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!("pattern {pattern:?} has the unsupported letter {c:?}"));
            }
            (c, _) => {
                for _ in 0..run {
                    push_literal(&mut out, c);
                }
                i += run;
                continue;
            }
        };
        // Joda's fraction letters follow the seconds' dot, which chrono's %.f includes.
        if spec == "%.f" && out.ends_with('.') {
            out.pop();
        }
        out.push_str(spec);
        i += run;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

/// A MySQL pattern (`%Y-%m-%d %H:%i:%s`) as a chrono format.
fn mysql_to_chrono(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            push_literal(&mut out, c);
            continue;
        }
        let Some(spec) = chars.next() else {
            return Err(format!("pattern {pattern:?} ends with '%'"));
        };
        out.push_str(match spec {
            'Y' => "%Y",
            'y' => "%y",
            'm' | 'c' => "%m",
            'd' => "%d",
            'e' => "%e",
            'H' | 'k' => "%H",
            'h' | 'I' | 'l' => "%I",
            'i' => "%M",
            's' | 'S' => "%S",
            'f' => "%6f",
            'p' => "%p",
            'T' => "%H:%M:%S",
            'r' => "%I:%M:%S %p",
            'M' => "%B",
            'b' => "%b",
            'W' => "%A",
            'a' => "%a",
            'j' => "%j",
            '%' => "%%",
            other => return Err(format!("pattern {pattern:?} has the unsupported specifier %{other}")),
        });
    }
    Ok(out)
}

/// `date_format(ts, mysql_pattern)`.
fn date_format(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "date_format";
    let times = micros(NAME, &args[0])?;
    let patterns = text(NAME, &args[1])?;
    let Some(pattern) = constant(NAME, "pattern", &patterns)? else {
        return Ok(Arc::new(StringArray::from(vec![None::<&str>; times.len()])));
    };
    let format = mysql_to_chrono(pattern).map_err(|why| DataFusionError::Execution(format!("{NAME}: {why}")))?;
    let mut out = Vec::with_capacity(times.len());
    for t in times.iter() {
        out.push(match t {
            Some(t) => Some(utc(NAME, t)?.format(&format).to_string()),
            None => None,
        });
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// `date(x)`: the UTC date of a timestamp or of ISO 8601 text.
fn date(args: &[ArrayRef]) -> Result<ArrayRef> {
    if let DataType::Date32 = args[0].data_type() {
        return Ok(args[0].clone());
    }
    Ok(arrow::compute::cast(&to_timestamps("date", &args[0])?, &DataType::Date32)?)
}

/// The part functions: name and how a UTC time gives the part.
type Field = (&'static str, fn(DateTime<Utc>) -> i64);

const FIELDS: [Field; 14] = [
    ("year", |t| i64::from(t.year())),
    ("quarter", |t| i64::from(t.month0() / 3 + 1)),
    ("month", |t| i64::from(t.month())),
    ("week", |t| i64::from(t.iso_week().week())),
    ("week_of_year", |t| i64::from(t.iso_week().week())),
    ("day", |t| i64::from(t.day())),
    ("day_of_month", |t| i64::from(t.day())),
    ("day_of_week", |t| i64::from(t.weekday().number_from_monday())),
    ("dow", |t| i64::from(t.weekday().number_from_monday())),
    ("day_of_year", |t| i64::from(t.ordinal())),
    ("doy", |t| i64::from(t.ordinal())),
    ("hour", |t| i64::from(t.hour())),
    ("minute", |t| i64::from(t.minute())),
    ("second", |t| i64::from(t.second())),
];

fn date_field((name, part): Field, array: &ArrayRef) -> Result<ArrayRef> {
    let times = micros(name, array)?;
    let mut out = Vec::with_capacity(times.len());
    for t in times.iter() {
        out.push(match t {
            Some(t) => Some(part(utc(name, t)?)),
            None => None,
        });
    }
    Ok(Arc::new(Int64Array::from(out)))
}

/// `regexp_extract(s, pattern[, group])`: the first match, or its group; NULL when none.
fn regexp_extract(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "regexp_extract";
    if !(2..=3).contains(&args.len()) {
        return plan_err!("{NAME} takes a string, a pattern and optionally a group number");
    }
    let values = text(NAME, &args[0])?;
    let patterns = text(NAME, &args[1])?;
    let Some(pattern) = constant(NAME, "pattern", &patterns)? else {
        return Ok(Arc::new(StringArray::from(vec![None::<&str>; values.len()])));
    };
    let re = regex::Regex::new(pattern).map_err(|e| DataFusionError::Execution(format!("{NAME}: {e}")))?;
    let group = match args.get(2) {
        Some(g) => match arrow::compute::cast(g, &DataType::Int64)?.as_primitive::<Int64Type>().iter().next() {
            Some(Some(g)) => usize::try_from(g).ok(),
            _ => None,
        },
        None => Some(0),
    };
    let Some(group) = group.filter(|g| *g < re.captures_len()) else {
        return exec_err!("{NAME}: pattern {pattern:?} has no such group");
    };
    let out: StringArray =
        values.iter().map(|v| v.and_then(|v| re.captures(v)).and_then(|c| c.get(group)).map(|m| m.as_str())).collect();
    Ok(Arc::new(out))
}

/// `url_extract_host(url)`; NULL for text that is not a URL.
fn url_extract_host(args: &[ArrayRef]) -> Result<ArrayRef> {
    let values = text("url_extract_host", &args[0])?;
    let out: StringArray = values
        .iter()
        .map(|v| v.and_then(|v| url::Url::parse(v).ok()).and_then(|u| u.host_str().map(str::to_owned)))
        .collect();
    Ok(Arc::new(out))
}

fn json_values(name: &str, array: &ArrayRef) -> Result<Vec<Option<serde_json::Value>>> {
    // Text that is not JSON reads as NULL, as Athena's json_array_* functions treat it.
    Ok(text(name, array)?.iter().map(|v| v.and_then(|v| serde_json::from_str(v).ok())).collect())
}

/// `json_array_length(json)`: NULL when the text is not a JSON array.
fn json_array_length(args: &[ArrayRef]) -> Result<ArrayRef> {
    let values = json_values("json_array_length", &args[0])?;
    let out: Int64Array = values
        .iter()
        .map(|v| v.as_ref().and_then(|v| v.as_array()).and_then(|a| i64::try_from(a.len()).ok()))
        .collect();
    Ok(Arc::new(out))
}

/// `json_array_contains(json, value)`: whether the array holds the value (numbers compare by value).
fn json_array_contains(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "json_array_contains";
    let arrays = json_values(NAME, &args[0])?;
    let mut out = Vec::with_capacity(arrays.len());
    for (i, array) in arrays.iter().enumerate() {
        let needle = ScalarValue::try_from_array(&args[1], i)?;
        let item = match &needle {
            _ if needle.is_null() => None,
            ScalarValue::Boolean(Some(b)) => Some(serde_json::Value::Bool(*b)),
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                Some(serde_json::Value::String(s.clone()))
            }
            n if n.data_type().is_numeric() => match n.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(f)) => serde_json::Number::from_f64(f).map(serde_json::Value::Number),
                _ => None,
            },
            other => return exec_err!("{NAME}: cannot look for a {} in JSON", other.data_type()),
        };
        out.push(match (array.as_ref().and_then(|a| a.as_array()), item) {
            (Some(values), Some(item)) => Some(values.iter().any(|v| json_equal(v, &item))),
            _ => None,
        });
    }
    Ok(Arc::new(BooleanArray::from(out)))
}

fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// `json_parse` / `json_format`: bunker keeps JSON as text, so both check it and return it compact.
fn json_text(name: &str, array: &ArrayRef) -> Result<ArrayRef> {
    let values = text(name, array)?;
    let mut out = Vec::with_capacity(values.len());
    for v in values.iter() {
        out.push(match v {
            Some(v) => match serde_json::from_str::<serde_json::Value>(v) {
                Ok(json) => Some(json.to_string()),
                Err(e) => return exec_err!("{name}: {v:?} is not JSON: {e}"),
            },
            None => None,
        });
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// `replace(s, search[, replacement])`: Athena's two-argument form removes `search`.
fn replace(args: &[ArrayRef]) -> Result<ArrayRef> {
    const NAME: &str = "replace";
    if !(2..=3).contains(&args.len()) {
        return plan_err!("{NAME} takes a string, what to replace and optionally what to put instead");
    }
    let values = text(NAME, &args[0])?;
    let search = text(NAME, &args[1])?;
    let with = match args.get(2) {
        Some(w) => text(NAME, w)?,
        None => StringArray::from(vec![Some(""); values.len()]),
    };
    let out: StringArray = (0..values.len())
        .map(|i| {
            (values.is_valid(i) && search.is_valid(i) && with.is_valid(i))
                .then(|| values.value(i).replace(search.value(i), with.value(i)))
        })
        .collect();
    Ok(Arc::new(out))
}

/// `contains` and `element_at` over arrays, which DataFusion spells `array_has` and
/// `array_element`; over text (contains) or maps (element_at) DataFusion's own run.
#[derive(Debug)]
struct ListOr {
    name: &'static str,
    signature: Signature,
    list: fn() -> Arc<ScalarUDF>,
    other: fn() -> Arc<ScalarUDF>,
}

impl PartialEq for ListOr {
    fn eq(&self, other: &ListOr) -> bool {
        self.name == other.name
    }
}

impl Eq for ListOr {}

impl std::hash::Hash for ListOr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ListOr {
    fn contains() -> ListOr {
        ListOr {
            name: "contains",
            signature: Signature::any(2, Volatility::Immutable),
            list: datafusion::functions_nested::array_has::array_has_udf,
            other: datafusion::functions::string::contains,
        }
    }

    fn element_at() -> ListOr {
        ListOr {
            name: "element_at",
            signature: Signature::any(2, Volatility::Immutable),
            list: datafusion::functions_nested::extract::array_element_udf,
            other: datafusion::functions_nested::map_extract::map_extract_udf,
        }
    }

    fn pick(&self, first: &DataType) -> Arc<ScalarUDF> {
        match first {
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => (self.list)(),
            _ => (self.other)(),
        }
    }
}

impl ScalarUDFImpl for ListOr {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(first) => self.pick(first).return_type(arg_types),
            None => plan_err!("{} takes two arguments", self.name),
        }
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let first = args.arg_fields[0].data_type().clone();
        if self.name == "contains" && !matches!(first, DataType::List(_) | DataType::LargeList(_)) {
            // DataFusion's string `contains` wants both sides as the same text type.
            for (value, field) in args.args.iter_mut().zip(args.arg_fields.iter_mut()) {
                *value = value.cast_to(&DataType::Utf8, None)?;
                *field = Arc::new(field.as_ref().clone().with_data_type(DataType::Utf8));
            }
        }
        self.pick(&first).invoke_with_args(args)
    }
}

/// `count_if(condition)`: rows where the condition is true.
fn count_if() -> AggregateUDF {
    #[derive(Debug, Default)]
    struct CountIf(i64);

    impl Accumulator for CountIf {
        fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
            let Some(conditions) = values[0].as_boolean_opt() else {
                return exec_err!("count_if: expected a condition, got {}", values[0].data_type());
            };
            self.0 += i64::try_from(conditions.true_count()).unwrap_or(i64::MAX);
            Ok(())
        }

        fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
            self.0 += states[0].as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
            Ok(())
        }

        fn state(&mut self) -> Result<Vec<ScalarValue>> {
            Ok(vec![ScalarValue::Int64(Some(self.0))])
        }

        fn evaluate(&mut self) -> Result<ScalarValue> {
            Ok(ScalarValue::Int64(Some(self.0)))
        }

        fn size(&self) -> usize {
            std::mem::size_of_val(self)
        }
    }

    create_udaf(
        "count_if",
        vec![DataType::Boolean],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(CountIf::default()))),
        Arc::new(vec![DataType::Int64]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn context() -> SessionContext {
        let mut ctx = SessionContext::new();
        crate::udf::register(&mut ctx).expect("register");
        ctx
    }

    /// The single value of a one-row, one-column result, as DataFusion prints it.
    async fn one(sql: &str) -> String {
        let batches = context().await.sql(sql).await.expect(sql).collect().await.expect(sql);
        let formatted = arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string();
        formatted.lines().nth(3).expect("a row").trim_matches(|c| c == '|' || c == ' ').to_owned()
    }

    async fn fails(sql: &str) -> String {
        match context().await.sql(sql).await {
            Err(e) => e.to_string(),
            Ok(frame) => frame.collect().await.expect_err(sql).to_string(),
        }
    }

    const TS: &str = "from_iso8601_timestamp('2025-03-01T10:20:30Z')";

    #[tokio::test]
    async fn functions_give_athenas_answers() {
        let cases: &[(&str, &str)] = &[
            // Time.
            ("date_add('day', 1, TS)", "2025-03-02T10:20:30Z"),
            ("date_add('HOUR', -24, TS)", "2025-02-28T10:20:30Z"),
            ("date_add('month', 1, from_iso8601_timestamp('2025-01-31T00:00:00Z'))", "2025-02-28T00:00:00Z"),
            ("date_add('year', -1, TS)", "2024-03-01T10:20:30Z"),
            ("date_add('millisecond', 5, TS)", "2025-03-01T10:20:30.005Z"),
            ("date_add('day', NULL, TS) IS NULL", "true"),
            ("date_add('day', 1, NULL) IS NULL", "true"),
            ("date_diff('second', TS, date_add('minute', 2, TS))", "120"),
            ("date_diff('hour', date_add('minute', 119, TS), TS)", "-1"),
            ("date_diff('day', TIMESTAMP '2025-03-01 00:00:00', TIMESTAMP '2025-03-08 23:59:59')", "7"),
            ("date_diff('month', TIMESTAMP '2025-01-31 00:00:00', TIMESTAMP '2025-02-28 00:00:00')", "0"),
            ("date_diff('month', TIMESTAMP '2025-01-15 00:00:00', TIMESTAMP '2025-03-15 00:00:00')", "2"),
            ("date_diff('year', TIMESTAMP '2020-06-01 00:00:00', TIMESTAMP '2025-05-31 00:00:00')", "4"),
            ("date_diff('day', NULL, TS) IS NULL", "true"),
            ("from_iso8601_timestamp('2025-03-01T12:00:00+02:00')", "2025-03-01T10:00:00Z"),
            ("from_iso8601_timestamp('2025-03-01')", "2025-03-01T00:00:00Z"),
            ("from_iso8601_timestamp(NULL) IS NULL", "true"),
            ("to_iso8601(TS)", "2025-03-01T10:20:30.000Z"),
            ("to_iso8601(DATE '2025-03-01')", "2025-03-01"),
            ("to_iso8601(from_unixtime(1700000000))", "2023-11-14T22:13:20.000Z"),
            ("from_unixtime(1700000000.5)", "2023-11-14T22:13:20.500Z"),
            ("from_unixtime(TS)", "2025-03-01T10:20:30Z"),
            ("from_unixtime(NULL) IS NULL", "true"),
            ("parse_datetime('2020-09-24-00:08:00', 'yyyy-MM-dd-HH:mm:ss')", "2020-09-24T00:08:00Z"),
            ("parse_datetime('2020-09-24T00:08:00Z', 'yyyy-MM-dd''T''HH:mm:ss''Z')", "2020-09-24T00:08:00Z"),
            ("parse_datetime('2020-09-24 00:08:00.250', 'yyyy-MM-dd HH:mm:ss.SSS')", "2020-09-24T00:08:00.250Z"),
            ("parse_datetime('2020/09/24', 'yyyy/MM/dd')", "2020-09-24T00:00:00Z"),
            ("parse_datetime(TS, 'yyyy')", "2025-03-01T10:20:30Z"),
            ("date_parse('2025-03-01 10:20:30', '%Y-%m-%d %H:%i:%s')", "2025-03-01T10:20:30Z"),
            ("date_format(TS, '%Y-%m-%d %H:%i:%s')", "2025-03-01 10:20:30"),
            ("date_format(TS, '%M %e, %Y')", "March  1, 2025"),
            ("date_format(NULL, '%Y') IS NULL", "true"),
            ("date('2020-05-04')", "2020-05-04"),
            ("date(TS)", "2025-03-01"),
            ("year(TS)", "2025"),
            ("quarter(TS)", "1"),
            ("month(TS)", "3"),
            ("day(TS)", "1"),
            ("hour(TS)", "10"),
            ("minute(TS)", "20"),
            ("second(TS)", "30"),
            ("day_of_week(DATE '2020-05-04')", "1"),
            ("day_of_week(TIMESTAMP '2020-05-03 23:00:00')", "7"),
            ("day_of_year(TS)", "60"),
            ("week(TS)", "9"),
            ("hour(NULL) IS NULL", "true"),
            // Text.
            ("replace('arn:aws:s3:::bucket/key', 'arn:aws:s3:::')", "bucket/key"),
            ("replace('a-b-c', '-', '+')", "a+b+c"),
            ("replace(NULL, 'a') IS NULL", "true"),
            ("regexp_extract('ip-10-0-1-5.ec2.internal', '[0-9]+')", "10"),
            ("regexp_extract('user/alice@example.com', '([a-z]+)@([a-z.]+)', 2)", "example.com"),
            ("regexp_extract('no digits', '[0-9]+') IS NULL", "true"),
            ("url_extract_host('https://s3.amazonaws.com:443/bucket?x=1')", "s3.amazonaws.com"),
            ("url_extract_host('not a url') IS NULL", "true"),
            // JSON.
            ("json_array_length('[1, 2, {\"a\": 3}]')", "3"),
            ("json_array_length('{\"a\": 1}') IS NULL", "true"),
            ("json_array_length('not json') IS NULL", "true"),
            ("json_array_contains('[1, 2, 3]', 2)", "true"),
            ("json_array_contains('[1.0, 2]', 1)", "true"),
            ("json_array_contains('[\"s3:GetObject\", \"s3:PutObject\"]', 's3:PutObject')", "true"),
            ("json_array_contains('[\"s3:GetObject\"]', 's3:*')", "false"),
            ("json_array_contains('[true]', true)", "true"),
            ("json_array_contains('[1]', NULL) IS NULL", "true"),
            ("json_format(json_parse('{ \"a\" : [1, 2] }'))", "{\"a\":[1,2]}"),
            // Arrays (and DataFusion's text `contains` still works).
            ("contains(make_array('a', 'b'), 'b')", "true"),
            ("contains(make_array(1, 2), 3)", "false"),
            ("contains('s3.amazonaws.com', 'amazonaws')", "true"),
            ("element_at(make_array('a', 'b'), 2)", "b"),
            ("element_at(make_array('a', 'b'), 3) IS NULL", "true"),
            // DataFusion's own, under the names Athena uses.
            ("regexp_like('AccessDenied', '^Access')", "true"),
            ("split_part('10.117.1.22', '.', 2)", "117"),
            ("array_join(make_array('a', 'b'), ',')", "a,b"),
            ("cardinality(make_array(1, 2))", "2"),
            ("strpos('abc', 'c')", "3"),
            ("try_cast('x' AS integer) IS NULL", "true"),
            ("CAST(443 AS varchar)", "443"),
        ];
        for (expr, expected) in cases {
            let sql = format!("SELECT {}", expr.replace("TS", TS));
            assert_eq!(one(&sql).await, *expected, "{expr}");
        }
    }

    #[tokio::test]
    async fn aggregates_give_athenas_answers() {
        let values = "FROM (VALUES (1, 'a'), (2, 'a'), (3, NULL), (4, 'b')) AS t(n, s)";
        assert_eq!(one(&format!("SELECT count_if(n > 1) {values}")).await, "3");
        assert_eq!(one(&format!("SELECT count_if(s = 'a') {values}")).await, "2", "NULL conditions do not count");
        assert_eq!(one(&format!("SELECT count_if(n > 9) {values}")).await, "0");
        assert_eq!(one(&format!("SELECT arbitrary(s) IN ('a', 'b') {values} WHERE s IS NOT NULL")).await, "true");
        // DataFusion's t-digest interpolates between the middle values where Athena picks one.
        assert_eq!(one(&format!("SELECT approx_percentile(n, 0.5) {values}")).await, "2.5");
        assert_eq!(one(&format!("SELECT approx_distinct(s) {values}")).await, "2");
    }

    /// Bad units and patterns are errors that name the function and the mistake, not panics.
    #[tokio::test]
    async fn bad_units_and_patterns_are_clear_errors() {
        for (sql, message) in [
            (format!("SELECT date_add('fortnight', 1, {TS})"), "date_add: \"fortnight\" is not a unit"),
            (format!("SELECT date_diff('days', {TS}, {TS})"), "date_diff: \"days\" is not a unit"),
            ("SELECT from_iso8601_timestamp('yesterday')".to_owned(), "from_iso8601_timestamp:"),
            ("SELECT parse_datetime('2020-09-24', 'yyyy-MM-dd HH')".to_owned(), "does not match"),
            ("SELECT parse_datetime('x', 'yyyy-QQ')".to_owned(), "unsupported letter 'Q'"),
            (format!("SELECT date_format({TS}, '%Q')"), "unsupported specifier %Q"),
            ("SELECT regexp_extract('a', '(')".to_owned(), "regexp_extract:"),
            ("SELECT regexp_extract('a', 'a', 2)".to_owned(), "has no such group"),
            ("SELECT json_parse('{')".to_owned(), "json_parse: \"{\" is not JSON"),
            ("SELECT count_if(1)".to_owned(), "count_if"),
        ] {
            let err = fails(&sql).await;
            assert!(err.contains(message), "{sql}: {err}");
        }
    }

    #[test]
    fn joda_patterns_become_chrono_formats() {
        assert_eq!(joda_to_chrono("yyyy-MM-dd'T'HH:mm:ss'Z'"), Ok("%Y-%m-%dT%H:%M:%SZ".to_owned()));
        assert_eq!(joda_to_chrono("yyyy-MM-dd HH:mm:ss.SSS Z"), Ok("%Y-%m-%d %H:%M:%S%.f %z".to_owned()));
        assert_eq!(joda_to_chrono("'100%' yyyy"), Ok("100%% %Y".to_owned()));
        assert_eq!(joda_to_chrono("HH:mm:ss'Z"), Ok("%H:%M:%SZ".to_owned()), "an unclosed quote runs to the end");
    }
}
