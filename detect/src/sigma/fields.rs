//! Sigma field names onto the lake's columns.
//!
//! Sigma's CloudTrail rules name fields as CloudTrail writes them (`eventName`,
//! `userIdentity.sessionContext.sessionIssuer.type`, `requestParameters.bucketName`). The lake
//! keeps the record's top level and `userIdentity` as lowercase columns and structs, and the
//! free-form parts (`requestParameters`, `responseElements`, `additionalEventData`, …) as JSON
//! text. So a name is matched case-insensitively against the table's columns and struct fields,
//! and once it reaches a JSON column the rest of it is a path of JSON keys, matched exactly as
//! JSON keys are, read with `json_path_text` (which also finds the values inside arrays). A name
//! that matches nothing is an error, never a test that is silently always false.

use arrow::datatypes::{DataType, Field};
use bunker_schemas::LogTable;

use super::pattern::quote;

/// What a field holds, which decides how a value is compared with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (or JSON text read at a path).
    Text,
    /// A whole JSON object kept as text: string tests search its text.
    JsonText,
    /// A number.
    Number,
    /// true or false.
    Boolean,
    /// A point in time.
    Timestamp,
}

/// A Sigma field as SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The SQL expression reading it.
    pub sql: String,
    /// What it holds.
    pub kind: Kind,
}

impl Column {
    /// The field as text, for string tests: numbers, booleans and times in their text form.
    pub fn text(&self) -> String {
        match self.kind {
            Kind::Text | Kind::JsonText => self.sql.clone(),
            Kind::Number | Kind::Boolean | Kind::Timestamp => format!("CAST({} AS VARCHAR)", self.sql),
        }
    }

    /// The field as a number, for `|lt`, `|gt` and their kin.
    pub fn number(&self) -> String {
        match self.kind {
            Kind::Number => self.sql.clone(),
            _ => format!("TRY_CAST({} AS DOUBLE)", self.text()),
        }
    }
}

/// The JSON text columns of each table: below them a field name is a path of JSON keys.
fn is_json(table: LogTable, path: &[&str]) -> bool {
    match table {
        LogTable::CloudTrail => matches!(
            path,
            ["requestparameters"]
                | ["responseelements"]
                | ["additionaleventdata"]
                | ["serviceeventdetails"]
                | ["edgedevicedetails"]
                | ["insightdetails"]
                | ["additional_fields"]
                | ["useridentity", "sessioncontext", "webidfederationdata", "attributes"]
        ),
        _ => false,
    }
}

/// The column of `table` that the Sigma field `name` names.
pub fn resolve(table: LogTable, name: &str) -> Result<Column, String> {
    let unknown = |why: &str| format!("field {name:?} is not in the {} table{why}", table.name());
    let parts: Vec<&str> = name.split('.').collect();
    if name.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("field name {name:?} is empty or has an empty part"));
    }
    let schema = table.schema();
    let mut field: &Field = schema
        .fields()
        .iter()
        .find(|f| f.name().eq_ignore_ascii_case(parts[0]))
        .map(|f| f.as_ref())
        .ok_or_else(|| unknown(""))?;
    let mut path = vec![field.name().as_str()];
    for (at, part) in parts.iter().enumerate().skip(1) {
        if is_json(table, &path) {
            let keys: Vec<String> = parts[at..].iter().map(|key| quote(key)).collect();
            return Ok(Column {
                sql: format!("json_path_text({}, {})", path.join("."), keys.join(", ")),
                kind: Kind::Text,
            });
        }
        let DataType::Struct(children) = field.data_type() else {
            return Err(unknown(&format!(": {} has no fields", path.join("."))));
        };
        field = children
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(part))
            .map(|f| f.as_ref())
            .ok_or_else(|| unknown(&format!(": {} has no field {part:?}", path.join("."))))?;
        path.push(field.name().as_str());
    }
    let sql = path.join(".");
    let kind = match field.data_type() {
        _ if is_json(table, &path) => Kind::JsonText,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
        DataType::Boolean => Kind::Boolean,
        DataType::Timestamp(..) | DataType::Date32 => Kind::Timestamp,
        t if t.is_numeric() => Kind::Number,
        other => return Err(format!("field {name:?} is a {other} column, which Sigma values cannot be compared with")),
    };
    Ok(Column { sql, kind })
}

/// The table a Sigma `logsource` names, or why it names none bunker has.
pub fn table_of(product: Option<&str>, service: Option<&str>, category: Option<&str>) -> Result<LogTable, String> {
    let lower = |text: Option<&str>| text.map(str::to_ascii_lowercase);
    match (lower(product).as_deref(), lower(service).as_deref(), lower(category).as_deref()) {
        (Some("aws"), Some("cloudtrail"), _) => Ok(LogTable::CloudTrail),
        (Some("aws"), Some("vpcflowlogs" | "vpcflow" | "vpc_flow_logs"), _) => Ok(LogTable::VpcFlow),
        (Some("aws"), Some("route53" | "route53resolver" | "dns"), _) => Ok(LogTable::Dns),
        (_, _, Some("dns")) => Ok(LogTable::Dns),
        (product, service, category) => Err(format!(
            "logsource (product {}, service {}, category {}) is not a log bunker keeps; bunker reads product \
             aws with service cloudtrail, vpcflowlogs or route53",
            product.unwrap_or("-"),
            service.unwrap_or("-"),
            category.unwrap_or("-")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(name: &str) -> String {
        resolve(LogTable::CloudTrail, name).expect(name).sql
    }

    #[test]
    fn cloudtrail_names_map_onto_columns_structs_and_json_paths() {
        assert_eq!(sql("eventName"), "eventname");
        assert_eq!(sql("sourceIPAddress"), "sourceipaddress");
        assert_eq!(sql("userIdentity.type"), "useridentity.type");
        assert_eq!(
            sql("userIdentity.sessionContext.sessionIssuer.type"),
            "useridentity.sessioncontext.sessionissuer.type"
        );
        assert_eq!(sql("requestParameters.bucketName"), "json_path_text(requestparameters, 'bucketName')");
        assert_eq!(
            sql("responseElements.pendingModifiedValues.masterUserPassword"),
            "json_path_text(responseelements, 'pendingModifiedValues', 'masterUserPassword')"
        );
        assert_eq!(resolve(LogTable::CloudTrail, "requestParameters").expect("whole").kind, Kind::JsonText);
        assert_eq!(resolve(LogTable::CloudTrail, "readOnly").expect("flag").kind, Kind::Boolean);
        assert_eq!(resolve(LogTable::CloudTrail, "eventTime").expect("time").kind, Kind::Timestamp);
    }

    #[test]
    fn an_unknown_field_is_an_error_naming_it() {
        let err = resolve(LogTable::CloudTrail, "status").unwrap_err();
        assert!(err.contains("\"status\"") && err.contains("cloudtrail"), "{err}");
        let err = resolve(LogTable::CloudTrail, "userIdentity.colour").unwrap_err();
        assert!(err.contains("no field \"colour\""), "{err}");
        let err = resolve(LogTable::CloudTrail, "eventName.x").unwrap_err();
        assert!(err.contains("eventname has no fields"), "{err}");
        assert!(resolve(LogTable::CloudTrail, "").is_err());
        assert!(resolve(LogTable::CloudTrail, "a..b").is_err());
    }

    #[test]
    fn logsources_name_tables() {
        assert_eq!(table_of(Some("aws"), Some("cloudtrail"), None), Ok(LogTable::CloudTrail));
        assert_eq!(table_of(Some("AWS"), Some("vpcflowlogs"), None), Ok(LogTable::VpcFlow));
        assert_eq!(table_of(Some("aws"), Some("route53"), None), Ok(LogTable::Dns));
        assert!(table_of(Some("windows"), Some("security"), None).unwrap_err().contains("windows"));
        assert!(table_of(Some("azure"), None, None).is_err());
    }
}
