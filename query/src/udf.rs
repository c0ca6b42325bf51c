//! The SQL functions bunker adds to DataFusion: JSON over the free-form CloudTrail fields, the
//! Athena (Presto) names for them, and IP/CIDR helpers for the address columns.
//!
//! JSON parsing is datafusion-functions-json's (`json_get_str`, `json_as_text`, `->`, `->>`, ...);
//! `json_extract_scalar` and `json_extract` only translate an Athena JSONPath (`$.a.b[0]`) into
//! that crate's key path, so queries copied from AWS's Athena examples run unchanged. Addresses
//! are parsed with the standard library and `ipnet`; an address that does not parse is NULL, not
//! an error, because flow and DNS columns legitimately hold `-` or hostnames.
//!
//! `date_trunc` is DataFusion's own, with a fast path for the UTC timestamps every bunker table
//! holds (see [`UtcDateTrunc`]).

use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use arrow::datatypes::FieldRef;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    create_udf,
};
use ipnet::IpNet;

/// Registers every bunker function (and datafusion-functions-json's, and the Athena ones of
/// [`crate::presto`]) with a registry.
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    datafusion_functions_json::register_all(registry)?;
    for udf in [
        ScalarUDF::new_from_impl(JsonExtract::scalar()),
        ScalarUDF::new_from_impl(JsonExtract::json()),
        ScalarUDF::new_from_impl(JsonPathText::default()),
        cidr_contains(),
        address_class("is_private_ip", is_private),
        address_class("is_public_ip", is_public),
        aws_account_ids(),
        ScalarUDF::new_from_impl(AnswerRdata::default()),
        ScalarUDF::new_from_impl(BaseDomain::default()),
        ScalarUDF::new_from_impl(UtcDateTrunc { inner: datafusion::functions::datetime::date_trunc() }),
    ] {
        registry.register_udf(Arc::new(udf))?;
    }
    crate::presto::register(registry)
}

/// Names and one-line descriptions of the functions bunker adds, for `\df` in the shell.
pub const FUNCTIONS: &[(&str, &str)] = &[
    (
        "json_get_str(json, key, ...)",
        "the string at a key path of a JSON text column (also: json_get_int, _float, _bool, _json)",
    ),
    ("json ->> 'key'", "any value at a key as text; `->` keeps the JSON type"),
    ("json_contains(json, key, ...)", "whether the key path exists"),
    ("json_extract_scalar(json, '$.a.b[0]')", "Athena's name: the scalar at a JSONPath, as text"),
    ("json_extract(json, '$.a')", "Athena's name: the JSON text at a JSONPath"),
    (
        "json_path_text(json, key, ...)",
        "every value at a key path, through arrays, as text (several joined by newlines); how Sigma fields read JSON",
    ),
    ("cidr_contains('10.0.0.0/8', addr)", "whether an IPv4/IPv6 address lies in a CIDR block"),
    ("is_private_ip(addr)", "RFC 1918, loopback, link-local, CGNAT and IPv6 ULA addresses"),
    ("is_public_ip(addr)", "an internet address: not private, reserved or multicast (documentation ranges count)"),
    (
        "base_domain(name)",
        "the last two labels of a DNS name, lowercased, without the final dot: 'a.B.example.com.' -> 'example.com'",
    ),
    (
        "answer_rdata(answers)",
        "the rdata of every DNS answer, as a list: array_has(answer_rdata(answers), '203.0.113.9')",
    ),
];

/// `date_trunc` exactly as DataFusion computes it, but fast for UTC timestamps. DataFusion 55
/// truncates a timestamp that carries a time zone to days (or weeks, months...) one value at a
/// time through chrono-tz — formatting an error message for every value on the way — which made
/// `date_trunc('day', eventtime)` most of the CPU of an "events per region per day" query over
/// the lake. In UTC, local time is the timestamp itself, so the same arithmetic DataFusion does
/// for timestamps without a zone gives the same answer: the zone is taken off the array (no copy),
/// DataFusion's function runs, and the zone is put back on its result.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    /// Zones in which local time is UTC (how Arrow and DataFusion spell them).
    fn is_utc(zone: &str) -> bool {
        ["UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "+00:00", "+0000", "+00", "-00:00"]
            .iter()
            .any(|utc| zone.eq_ignore_ascii_case(utc))
    }

    /// The array with its timestamp type given `zone` (the values are untouched).
    fn with_zone(array: &ArrayRef, zone: Option<Arc<str>>) -> Result<ArrayRef> {
        let DataType::Timestamp(unit, _) = array.data_type() else {
            return exec_err!("date_trunc: expected a timestamp array, got {}", array.data_type());
        };
        let data = array.to_data().into_builder().data_type(DataType::Timestamp(*unit, zone)).build()?;
        Ok(arrow::array::make_array(data))
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match args.args.get(1) {
            Some(ColumnarValue::Array(array)) => match array.data_type() {
                DataType::Timestamp(_, Some(zone)) if Self::is_utc(zone) => Some(zone.clone()),
                _ => None,
            },
            _ => None,
        };
        let Some(zone) = zone else {
            return self.inner.invoke_with_args(args);
        };
        // The arguments and the promised result all lose the zone, so they agree with each other.
        if let ColumnarValue::Array(array) = &mut args.args[1] {
            *array = Self::with_zone(array, None)?;
            let field = args.arg_fields[1].as_ref().clone().with_data_type(array.data_type().clone());
            args.arg_fields[1] = Arc::new(field);
        }
        if let DataType::Timestamp(unit, Some(_)) = args.return_field.data_type() {
            let field = args.return_field.as_ref().clone().with_data_type(DataType::Timestamp(*unit, None));
            args.return_field = Arc::new(field);
        }
        match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(truncated) => Ok(ColumnarValue::Array(Self::with_zone(&truncated, Some(zone))?)),
            scalar => Ok(scalar),
        }
    }
}

/// `base_domain(name)`: the last two labels of a DNS name, lowercased, without the final dot, so
/// queries can be grouped by the domain they fall under (`x1.tunnel.example.com.` and
/// `x2.tunnel.example.com` → `example.com`). A name of one label is itself. Not aware of public
/// suffixes: under `co.uk` every name falls in `co.uk`. Reads text and text views without a cast:
/// the DNS rules run it over every query of their window.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BaseDomain {
    signature: Signature,
}

impl Default for BaseDomain {
    fn default() -> BaseDomain {
        let text = vec![DataType::Utf8, DataType::Utf8View, DataType::LargeUtf8];
        BaseDomain { signature: Signature::uniform(1, text, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for BaseDomain {
    fn name(&self) -> &str {
        "base_domain"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let names = match &args.args[0] {
            ColumnarValue::Scalar(value) => {
                let name = match value {
                    ScalarValue::Utf8(n) | ScalarValue::Utf8View(n) | ScalarValue::LargeUtf8(n) => n.as_deref(),
                    _ => None,
                };
                return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(name.map(|n| base_domain(n).into_owned()))));
            }
            ColumnarValue::Array(array) => array,
        };
        fn domains<'a>(names: impl Iterator<Item = Option<&'a str>>) -> StringArray {
            names.map(|n| n.map(base_domain)).collect()
        }
        let out = match names.data_type() {
            DataType::Utf8View => domains(names.as_string_view().iter()),
            DataType::LargeUtf8 => domains(names.as_string::<i64>().iter()),
            _ => domains(as_utf8(names)?.iter()),
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The last two labels of `name`, lowercased, without the final dot.
fn base_domain(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let start = match name.rfind('.') {
        Some(last) => name[..last].rfind('.').map_or(0, |dot| dot + 1),
        None => 0,
    };
    let domain = &name[start..];
    match domain.bytes().any(|b| b.is_ascii_uppercase()) {
        true => std::borrow::Cow::Owned(domain.to_ascii_lowercase()),
        false => std::borrow::Cow::Borrowed(domain),
    }
}

/// `answer_rdata(answers)`: the `rdata` of each entry of the `dns.answers` list, as a list of
/// text, so `array_has` can ask which queries resolved to an address. Shares the list's offsets
/// and the struct's child column; nothing is copied.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AnswerRdata {
    signature: Signature,
}

impl Default for AnswerRdata {
    fn default() -> AnswerRdata {
        AnswerRdata { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl AnswerRdata {
    fn item() -> Arc<arrow::datatypes::Field> {
        Arc::new(arrow::datatypes::Field::new_list_field(DataType::Utf8, true))
    }
}

impl ScalarUDFImpl for AnswerRdata {
    fn name(&self) -> &str {
        "answer_rdata"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::List(item)] if matches!(item.data_type(), DataType::Struct(f) if f.find("rdata").is_some()) => {
                Ok(DataType::List(AnswerRdata::item()))
            }
            _ => plan_err!("answer_rdata takes the dns.answers column (a list of {{rdata, type, class}})"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let answers = args.args[0].to_array(args.number_rows)?;
        let Some(list) = answers.as_any().downcast_ref::<arrow::array::ListArray>() else {
            return exec_err!("answer_rdata: expected a list, got {}", answers.data_type());
        };
        let Some(entries) = list.values().as_any().downcast_ref::<arrow::array::StructArray>() else {
            return exec_err!("answer_rdata: expected a list of structs");
        };
        let Some(rdata) = entries.column_by_name("rdata") else {
            return exec_err!("answer_rdata: the answers have no rdata");
        };
        let rdata = arrow::compute::cast(rdata, &DataType::Utf8)?;
        let out = arrow::array::ListArray::try_new(
            AnswerRdata::item(),
            list.offsets().clone(),
            rdata,
            list.nulls().cloned(),
        )?;
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(out)),
        })
    }
}

/// `json_extract_scalar` / `json_extract`: Athena's JSONPath functions, run by
/// datafusion-functions-json once the path is turned into keys.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonExtract {
    name: &'static str,
    signature: Signature,
    /// `json_as_text` for the scalar form, `json_get_json` for the JSON form.
    scalar: bool,
}

impl JsonExtract {
    fn scalar() -> JsonExtract {
        JsonExtract { name: "json_extract_scalar", signature: Signature::any(2, Volatility::Immutable), scalar: true }
    }

    fn json() -> JsonExtract {
        JsonExtract { name: "json_extract", signature: Signature::any(2, Volatility::Immutable), scalar: false }
    }

    fn inner(&self) -> Arc<ScalarUDF> {
        if self.scalar {
            datafusion_functions_json::udfs::json_as_text_udf()
        } else {
            datafusion_functions_json::udfs::json_get_json_udf()
        }
    }
}

impl ScalarUDFImpl for JsonExtract {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null) => Ok(DataType::Utf8),
            Some(other) => plan_err!("{}: the first argument must be JSON text, not {other}", self.name),
            None => plan_err!("{} takes a JSON text and a path such as '$.bucketName'", self.name),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ScalarFunctionArgs { args: values, arg_fields, number_rows, return_field, config_options } = args;
        let [json, path] = <[ColumnarValue; 2]>::try_from(values)
            .map_err(|_| datafusion::error::DataFusionError::Plan(format!("{} takes two arguments", self.name)))?;
        let path = match path {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)) | ScalarValue::LargeUtf8(Some(p)),
            ) => p,
            ColumnarValue::Scalar(_) => return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
            ColumnarValue::Array(_) => return exec_err!("{}: the path must be a constant such as '$.a.b'", self.name),
        };
        let keys = json_path_keys(&path).map_err(|why| {
            datafusion::error::DataFusionError::Execution(format!("{}: path {path:?} {why}", self.name))
        })?;
        let mut inner_args = vec![json];
        let mut inner_fields = vec![arg_fields[0].clone()];
        for key in keys {
            let (value, data_type) = match key {
                PathKey::Field(name) => (ScalarValue::Utf8(Some(name)), DataType::Utf8),
                PathKey::Index(i) => (ScalarValue::Int64(Some(i)), DataType::Int64),
            };
            inner_fields.push(Arc::new(arrow::datatypes::Field::new("key", data_type, true)));
            inner_args.push(ColumnarValue::Scalar(value));
        }
        self.inner().invoke_with_args(ScalarFunctionArgs {
            args: inner_args,
            arg_fields: inner_fields,
            number_rows,
            return_field,
            config_options,
        })
    }
}

/// `json_path_text(json, key, ...)`: every value found at a key path, as text, where an array met
/// on the way (or at the end) stands for each of its elements, the way SIEMs flatten JSON
/// (`requestParameters.containerDefinitions.command` reads the commands of every container).
/// Strings are their text, other values their compact JSON; no value is NULL, several are joined
/// by newlines, so a pattern finds any of them. Sigma rules read the JSON columns through it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonPathText {
    signature: Signature,
}

impl Default for JsonPathText {
    fn default() -> JsonPathText {
        JsonPathText { signature: Signature::variadic(vec![DataType::Utf8], Volatility::Immutable) }
    }
}

/// Appends to `out` the values of `value` at `keys`, through arrays.
fn values_at<'a>(value: &'a serde_json::Value, keys: &[&str], out: &mut Vec<&'a serde_json::Value>) {
    match (value, keys.split_first()) {
        (serde_json::Value::Array(items), _) => items.iter().for_each(|item| values_at(item, keys, out)),
        (serde_json::Value::Null, _) => {}
        (_, None) => out.push(value),
        (serde_json::Value::Object(map), Some((key, rest))) => {
            if let Some(inner) = map.get(*key) {
                values_at(inner, rest, out);
            }
        }
        (_, Some(_)) => {}
    }
}

fn path_text(json: &str, keys: &[&str]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut found = Vec::new();
    values_at(&value, keys, &mut found);
    let texts: Vec<String> = found
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

impl ScalarUDFImpl for JsonPathText {
    fn name(&self) -> &str {
        "json_path_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some((json, keys)) = args.args.split_first() else {
            return plan_err!("json_path_text takes a JSON text and at least one key");
        };
        let keys = keys
            .iter()
            .map(|key| match key {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(k))) => Ok(k.as_str()),
                _ => exec_err!("json_path_text: keys must be constant strings"),
            })
            .collect::<Result<Vec<&str>>>()?;
        match json {
            ColumnarValue::Scalar(value) => {
                let text = match value {
                    ScalarValue::Utf8(Some(text)) => path_text(text, &keys),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(text)))
            }
            ColumnarValue::Array(array) => {
                let texts = as_utf8(array)?;
                let out: StringArray = texts.iter().map(|t| t.and_then(|t| path_text(t, &keys))).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum PathKey {
    Field(String),
    Index(i64),
}

/// The keys of a JSONPath in the subset Athena's examples use: `$`, `.name`, `["name"]`, `[0]`.
fn json_path_keys(path: &str) -> Result<Vec<PathKey>, String> {
    let rest = path.trim().strip_prefix('$').ok_or("must start with '$'")?;
    let mut keys = Vec::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '.' => {
                let start = at + 1;
                let mut end = rest.len();
                while let Some(&(i, c)) = chars.peek() {
                    if c == '.' || c == '[' {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                let name = &rest[start..end];
                if name.is_empty() {
                    return Err(format!("has an empty key at byte {start}"));
                }
                keys.push(PathKey::Field(name.to_owned()));
            }
            '[' => {
                let close = rest[at..].find(']').ok_or("has an unclosed '['")? + at;
                let inside = rest[at + 1..close].trim();
                let quoted = inside
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| inside.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
                keys.push(match quoted {
                    Some(name) => PathKey::Field(name.to_owned()),
                    None => PathKey::Index(inside.parse().map_err(|_| format!("has a bad index [{inside}]"))?),
                });
                while chars.peek().is_some_and(|&(i, _)| i <= close) {
                    chars.next();
                }
            }
            other => return Err(format!("has {other:?} where '.' or '[' was expected")),
        }
    }
    Ok(keys)
}

/// `cidr_contains(cidr, address)`: whether the address lies in the block. A block that does not
/// parse is an error (it is the analyst's typo); an address that does not parse is NULL.
fn cidr_contains() -> ScalarUDF {
    create_udf(
        "cidr_contains",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args.iter().find_map(|a| match a {
                ColumnarValue::Array(array) => Some(array.len()),
                ColumnarValue::Scalar(_) => None,
            });
            let parse_block = |text: &str| -> Result<IpNet> {
                text.trim().parse::<IpNet>().or_else(|_| text.trim().parse::<IpAddr>().map(IpNet::from)).or_else(|_| {
                    exec_err!("cidr_contains: {text:?} is not a CIDR block such as '10.0.0.0/8' or '2001:db8::/32'")
                })
            };
            let addrs = args[1].to_array(rows.unwrap_or(1))?;
            let addrs = as_utf8(&addrs)?;
            let contains = |block: IpNet, i: usize| {
                addrs.is_valid(i).then(|| parse_addr(addrs.value(i))).flatten().map(|a| block.contains(&a))
            };
            // The block is nearly always a constant: parse it once, and do not repeat it per row.
            let out: Vec<Option<bool>> = match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(text))) => {
                    let block = parse_block(text)?;
                    (0..addrs.len()).map(|i| contains(block, i)).collect()
                }
                ColumnarValue::Scalar(_) => vec![None; addrs.len()],
                ColumnarValue::Array(blocks) => {
                    let blocks = as_utf8(blocks)?;
                    let mut out = Vec::with_capacity(addrs.len());
                    for i in 0..addrs.len() {
                        out.push(match blocks.is_valid(i) {
                            true => contains(parse_block(blocks.value(i))?, i),
                            false => None,
                        });
                    }
                    out
                }
            };
            let result: ArrayRef = Arc::new(BooleanArray::from(out));
            Ok(match rows {
                Some(_) => ColumnarValue::Array(result),
                None => ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?),
            })
        }),
    )
}

/// A one-argument address predicate (`is_private_ip`, `is_public_ip`).
fn address_class(name: &'static str, class: fn(IpAddr) -> bool) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| match &args[0] {
            ColumnarValue::Scalar(value) => {
                let text = match value {
                    ScalarValue::Utf8(text) => text.as_deref(),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(text.and_then(parse_addr).map(class))))
            }
            ColumnarValue::Array(array) => {
                let addrs = as_utf8(array)?;
                let out: BooleanArray = addrs.iter().map(|a| a.and_then(parse_addr).map(class)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }),
    )
}

/// `aws_account_ids(text)`: every AWS account id in a text, in order, each once — the 12-digit
/// numbers standing alone or inside ARNs (`arn:aws:iam::444455556666:root`), as a policy document
/// or a sharing request names them. Rules compare them with the organization's own accounts to
/// tell a share with a stranger from one inside the organization. NULL text gives NULL.
fn aws_account_ids() -> ScalarUDF {
    let item = Arc::new(arrow::datatypes::Field::new("item", DataType::Utf8, true));
    create_udf(
        "aws_account_ids",
        vec![DataType::Utf8],
        DataType::List(item.clone()),
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let texts = args[0].to_array(1)?;
            let texts = as_utf8(&texts)?;
            let mut out = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new()).with_field(item.clone());
            for i in 0..texts.len() {
                if texts.is_null(i) {
                    out.append_null();
                    continue;
                }
                let mut seen: Vec<&str> = Vec::new();
                for id in account_ids_in(texts.value(i)) {
                    if !seen.contains(&id) {
                        seen.push(id);
                        out.values().append_value(id);
                    }
                }
                out.append(true);
            }
            let result: ArrayRef = Arc::new(out.finish());
            Ok(match &args[0] {
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?),
                ColumnarValue::Array(_) => ColumnarValue::Array(result),
            })
        }),
    )
}

/// The runs of exactly 12 ASCII digits in `text` (a longer number is not an account id).
fn account_ids_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|run| run.len() == 12)
}

fn as_utf8(array: &ArrayRef) -> Result<&StringArray> {
    match array.as_any().downcast_ref::<StringArray>() {
        Some(strings) => Ok(strings),
        None => exec_err!("expected text, got {}", array.data_type()),
    }
}

fn parse_addr(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

/// Addresses that never leave a private network: RFC 1918, loopback, link-local, shared address
/// space (RFC 6598, carrier-grade NAT, also used inside AWS), and IPv6 unique-local.
fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Addresses on the internet: not private and not unspecified, multicast, broadcast or otherwise
/// reserved. The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
/// 2001:db8::/32) count as public: they stand in for internet addresses in AWS's examples and in
/// test data, and a detection should treat them as it would the real thing.
fn is_public(addr: IpAddr) -> bool {
    if is_private(addr) || addr.is_unspecified() || addr.is_multicast() {
        return false;
    }
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            // 0/8 "this network", 240/4 reserved (and broadcast), 198.18/15 benchmarking.
            !(a == 0 || a >= 240 || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            // Global unicast is 2000::/3.
            None => (v6.segments()[0] & 0xe000) == 0x2000,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn one(sql: &str) -> String {
        let mut ctx = SessionContext::new();
        register(&mut ctx).expect("register");
        let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
        let formatted = arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string();
        // The single value of a one-row, one-column result.
        formatted.lines().nth(3).expect("a row").trim_matches(|c| c == '|' || c == ' ').to_owned()
    }

    async fn fails(sql: &str) -> String {
        let mut ctx = SessionContext::new();
        register(&mut ctx).expect("register");
        match ctx.sql(sql).await {
            Err(e) => e.to_string(),
            Ok(frame) => frame.collect().await.expect_err(sql).to_string(),
        }
    }

    #[tokio::test]
    async fn aws_account_ids_finds_each_account_once_and_only_twelve_digit_runs() {
        let policy = r#"{"Principal":{"AWS":["arn:aws:iam::444455556666:root","777788889999"]},"Sid":"1234567890123","x":"arn:aws:iam::444455556666:role/r"}"#;
        assert_eq!(one(&format!("SELECT aws_account_ids('{policy}')")).await, "[444455556666, 777788889999]");
        assert_eq!(one("SELECT aws_account_ids('no ids, 12345678901 or 1234567890123')").await, "[]");
        assert_eq!(one("SELECT aws_account_ids(NULL)").await, "");
    }

    /// `date_trunc` over UTC timestamps (and others) gives exactly what DataFusion's own gives, at
    /// every granularity, around the epoch, leap days, year ends and with nulls.
    #[tokio::test]
    async fn date_trunc_matches_datafusion_in_every_zone() {
        use arrow::array::TimestampMicrosecondArray;
        use arrow::datatypes::{Field, Schema};
        use arrow::record_batch::RecordBatch;
        use datafusion::datasource::MemTable;

        let micros = [
            Some(0),
            Some(-1),
            Some(-86_400_000_001),
            Some(951_782_400_123_456),   // 2000-02-29 00:00:00.123456
            Some(1_709_251_199_999_999), // 2024-02-29 23:59:59.999999
            Some(1_735_689_599_500_000), // 2024-12-31 23:59:59.5
            Some(1_741_000_000_000_000),
            None,
        ];
        for zone in [Some("UTC"), Some("+00:00"), Some("Etc/UTC"), Some("Europe/Berlin"), None] {
            let column = TimestampMicrosecondArray::from(micros.to_vec()).with_timezone_opt(zone);
            let schema = Arc::new(Schema::new(vec![Field::new("ts", column.data_type().clone(), true)]));
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).expect("batch");
            let mut ours = SessionContext::new();
            register(&mut ours).expect("register");
            let theirs = SessionContext::new();
            for ctx in [&ours, &theirs] {
                let table = MemTable::try_new(schema.clone(), vec![vec![batch.clone()]]).expect("table");
                ctx.register_table("t", Arc::new(table)).expect("register table");
            }
            let units =
                ["microsecond", "millisecond", "second", "minute", "hour", "day", "week", "month", "quarter", "year"];
            for unit in units {
                let sql =
                    format!("SELECT date_trunc('{unit}', ts) AS t, arrow_typeof(date_trunc('{unit}', ts)) FROM t");
                let ours = ours.sql(&sql).await.expect("plan").collect().await.expect("run");
                let theirs = theirs.sql(&sql).await.expect("plan").collect().await.expect("run");
                assert_eq!(ours, theirs, "date_trunc('{unit}') in zone {zone:?}");
            }
        }
        // The session's date_trunc (and its alias) is this one, not DataFusion's.
        let mut ctx = SessionContext::new();
        register(&mut ctx).expect("register");
        for name in ["date_trunc", "datetrunc"] {
            let udf = ctx.udf(name).expect("registered");
            assert!(format!("{:?}", udf.inner()).contains("UtcDateTrunc"), "{name}: {udf:?}");
        }
        assert_eq!(
            one("SELECT date_trunc('day', arrow_cast(TIMESTAMP '2025-03-04T22:10:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))'))").await,
            "2025-03-04T00:00:00Z"
        );
    }

    #[test]
    fn json_paths_become_keys() {
        use PathKey::*;
        assert_eq!(json_path_keys("$"), Ok(vec![]));
        assert_eq!(json_path_keys("$.bucketName"), Ok(vec![Field("bucketName".into())]));
        assert_eq!(
            json_path_keys("$.a.b[2][\"c.d\"]"),
            Ok(vec![Field("a".into()), Field("b".into()), Index(2), Field("c.d".into())])
        );
        assert_eq!(json_path_keys("$['x']"), Ok(vec![Field("x".into())]));
        for bad in ["a.b", "$.", "$.a..b", "$[x]", "$[1", "$a"] {
            assert!(json_path_keys(bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn athena_json_functions_read_cloudtrail_parameters() {
        let json = r#"'{"bucketName":"logs","policy":{"Statement":[{"Effect":"Allow"}]},"n":3}'"#;
        assert_eq!(one(&format!("SELECT json_extract_scalar({json}, '$.bucketName')")).await, "logs");
        assert_eq!(one(&format!("SELECT json_extract_scalar({json}, '$.policy.Statement[0].Effect')")).await, "Allow");
        assert_eq!(one(&format!("SELECT json_extract_scalar({json}, '$.n')")).await, "3");
        assert_eq!(
            one(&format!("SELECT json_extract({json}, '$.policy.Statement[0]')")).await,
            r#"{"Effect":"Allow"}"#
        );
        assert_eq!(one(&format!("SELECT json_extract_scalar({json}, '$.missing') IS NULL")).await, "true");
        assert_eq!(one("SELECT json_extract_scalar('not json', '$.a') IS NULL").await, "true");
        // The crate's own functions and operators are there too.
        assert_eq!(one(&format!("SELECT json_get_str({json}, 'bucketName')")).await, "logs");
        assert_eq!(one(&format!("SELECT {json} ->> 'bucketName'")).await, "logs");
        let err = fails(&format!("SELECT json_extract_scalar({json}, 'bucketName')")).await;
        assert!(err.contains("must start with '$'"), "{err}");
    }

    #[tokio::test]
    async fn cidr_and_address_classes() {
        assert_eq!(one("SELECT cidr_contains('10.0.0.0/8', '10.1.2.3')").await, "true");
        assert_eq!(one("SELECT cidr_contains('10.0.0.0/8', '11.1.2.3')").await, "false");
        assert_eq!(one("SELECT cidr_contains('2001:db8::/32', '2001:db8::1')").await, "true");
        assert_eq!(one("SELECT cidr_contains('10.0.0.0/8', '2001:db8::1')").await, "false");
        assert_eq!(one("SELECT cidr_contains('192.0.2.7', '192.0.2.7')").await, "true");
        assert_eq!(one("SELECT cidr_contains('10.0.0.0/8', '-') IS NULL").await, "true");
        assert_eq!(one("SELECT cidr_contains('10.0.0.0/8', arrow_cast('10.9.9.9', 'Utf8View'))").await, "true");
        let per_row = "SELECT sum(CASE WHEN cidr_contains(b, '10.1.2.3') THEN 1 ELSE 0 END) \
                       FROM (VALUES ('10.0.0.0/8'), ('11.0.0.0/8'), ('10.1.0.0/16')) AS t(b)";
        assert_eq!(one(per_row).await, "2", "a block per row");
        let err = fails("SELECT cidr_contains('10.0.0/8', '10.1.2.3')").await;
        assert!(err.contains("\"10.0.0/8\" is not a CIDR block"), "{err}");

        for private in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(one(&format!("SELECT is_private_ip('{private}')")).await, "true", "{private}");
            assert_eq!(one(&format!("SELECT is_public_ip('{private}')")).await, "false", "{private}");
        }
        for public in ["8.8.8.8", "52.95.110.1", "2600:1f18::1", "::ffff:1.1.1.1", "203.0.113.9", "2001:db8::1"] {
            assert_eq!(one(&format!("SELECT is_private_ip('{public}')")).await, "false", "{public}");
            assert_eq!(one(&format!("SELECT is_public_ip('{public}')")).await, "true", "{public}");
        }
        for neither in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1", "ff02::1", "::"] {
            assert_eq!(one(&format!("SELECT is_public_ip('{neither}')")).await, "false", "{neither}");
        }
        assert_eq!(one("SELECT is_public_ip('ec2.amazonaws.com') IS NULL").await, "true");
    }

    #[tokio::test]
    async fn base_domain_is_the_last_two_labels() {
        for (name, domain) in [
            ("x1.tunnel.example.com.", "example.com"),
            ("x2.Tunnel.EXAMPLE.com", "example.com"),
            ("example.com.", "example.com"),
            ("localhost", "localhost"),
            ("", ""),
            (".", ""),
            ("a..b", ".b"),
        ] {
            assert_eq!(one(&format!("SELECT base_domain('{name}')")).await, domain, "{name}");
            let view = format!("SELECT base_domain(arrow_cast('{name}', 'Utf8View'))");
            assert_eq!(one(&view).await, domain, "{name} as a view");
        }
        assert_eq!(one("SELECT base_domain(NULL) IS NULL").await, "true");
        let per_row = "SELECT string_agg(base_domain(n), ',' ORDER BY n) \
                       FROM (VALUES ('a.b.c.'), (arrow_cast('x.Y.z', 'Utf8')), (NULL)) AS t(n)";
        assert_eq!(one(per_row).await, "b.c,y.z");
    }

    #[tokio::test]
    async fn answer_rdata_lists_the_answers() {
        let answers = "make_array(named_struct('rdata', '203.0.113.9', 'type', 'A', 'class', 'IN'), \
                       named_struct('rdata', 'cdn.example.', 'type', 'CNAME', 'class', 'IN'))";
        assert_eq!(one(&format!("SELECT array_has(answer_rdata({answers}), '203.0.113.9')")).await, "true");
        assert_eq!(one(&format!("SELECT array_has(answer_rdata({answers}), '203.0.113.1')")).await, "false");
        assert_eq!(one(&format!("SELECT array_length(answer_rdata({answers}))")).await, "2");
        let err = fails("SELECT answer_rdata(make_array(1, 2))").await;
        assert!(err.contains("answer_rdata takes the dns.answers column"), "{err}");
    }

    #[tokio::test]
    async fn json_path_text_reads_through_arrays() {
        let json = r#"'{"a":[{"c":["x","y"]},{"c":"z"},{"d":1}],"n":3,"b":{"t":true,"o":{"k":"v"}},"nul":null}'"#;
        let at = |path: &str| format!("SELECT json_path_text({json}, {path})");
        assert_eq!(one(&at("'n'")).await, "3");
        assert_eq!(one(&at("'b', 't'")).await, "true");
        assert_eq!(one(&at("'b', 'o'")).await, r#"{"k":"v"}"#);
        // Every value found through the arrays, one per line.
        let all = one(&format!("SELECT replace(json_path_text({json}, 'a', 'c'), chr(10), '|')")).await;
        assert_eq!(all, "x|y|z");
        for missing in ["'nope'", "'nul'", "'n', 'deeper'", "'a', 'd', 'e'"] {
            assert_eq!(one(&format!("SELECT json_path_text({json}, {missing}) IS NULL")).await, "true", "{missing}");
        }
        assert_eq!(one("SELECT json_path_text('not json', 'a') IS NULL").await, "true");
        assert_eq!(one("SELECT json_path_text(NULL, 'a') IS NULL").await, "true");
    }
}
