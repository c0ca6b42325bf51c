//! Suggestions for a statement that names a table or column the lake does not have: the closest
//! registered name, so `cloudtrial` gets "did you mean cloudtrail?" instead of a bare refusal.

use datafusion::catalog::SchemaProvider;
use datafusion::prelude::SessionContext;

/// A hint for DataFusion's error `message`, when it says a table or column was not found and a
/// registered name is close to it.
pub fn suggest(message: &str, ctx: &SessionContext) -> Option<String> {
    let schema = ctx.catalog("datafusion")?.schema("public")?;
    let tables = schema.table_names();
    if let Some(missing) = missing_table(message) {
        let best = closest(&missing, tables)?;
        return Some(format!("there is no table {missing}; did you mean {best}?"));
    }
    if let Some(field) = missing_struct_field(message) {
        let mut nested = Vec::new();
        for table in &tables {
            if let Some(fields) = table_fields(schema.as_ref(), table) {
                nested.extend(fields.into_iter().filter_map(|f| f.rsplit_once('.').map(|(_, child)| child.to_owned())));
            }
        }
        let best = closest(&field, nested)?;
        return Some(format!("there is no field {field} in that struct; did you mean {best}?"));
    }
    let missing = missing_column(message)?;
    // `cloudtrail.eventnme` limits the search to one table; `useridentity.arm` names a struct
    // column, not a table, and searches them all.
    let (qualifier, name) = match missing.rsplit_once('.') {
        Some((q, n)) => {
            (Some(q.rsplit('.').next().unwrap_or(q).to_owned()).filter(|q| tables.contains(q)), n.to_owned())
        }
        None => (None, missing.clone()),
    };
    let mut candidates = Vec::new();
    for table in tables {
        if qualifier.as_ref().is_some_and(|q| *q != table) {
            continue;
        }
        if let Some(fields) = table_fields(schema.as_ref(), &table) {
            candidates.extend(fields.into_iter().map(|f| (f, table.clone())));
        }
    }
    let best = closest(&name, candidates.iter().map(|(f, _)| f.clone()))?;
    let tables: Vec<&str> = candidates.iter().filter(|(f, _)| *f == best).map(|(_, t)| t.as_str()).collect();
    Some(format!("there is no column {name}; did you mean {best} (in {})?", tables.join(", ")))
}

/// Column names of a registered table, nested struct fields included as `parent.child` so that
/// `useridentity.arm` finds `useridentity.arn`.
fn table_fields(schema: &dyn SchemaProvider, table: &str) -> Option<Vec<String>> {
    // Table providers here are in memory or already opened, so this does not wait on I/O.
    let provider = futures::executor::block_on(schema.table(table)).ok().flatten()?;
    let mut names = Vec::new();
    for field in provider.schema().fields() {
        names.push(field.name().clone());
        collect_nested(field.name(), field.data_type(), &mut names);
    }
    Some(names)
}

/// Every struct field under `parent`, as `parent.child`, `parent.child.grandchild`, ...
fn collect_nested(parent: &str, data_type: &arrow::datatypes::DataType, names: &mut Vec<String>) {
    if let arrow::datatypes::DataType::Struct(children) = data_type {
        for child in children {
            let name = format!("{parent}.{}", child.name());
            names.push(name.clone());
            collect_nested(&name, child.data_type(), names);
        }
    }
}

/// `Field arm not found in struct` → `arm`.
fn missing_struct_field(message: &str) -> Option<String> {
    let rest = &message[message.find("Field ")? + "Field ".len()..];
    let name = &rest[..rest.find(" not found in struct")?];
    Some(name.trim_matches('"').to_owned())
}

/// `table 'datafusion.public.cloudtrial' not found` → `cloudtrial`.
fn missing_table(message: &str) -> Option<String> {
    let rest = &message[message.find("table '")? + "table '".len()..];
    let name = &rest[..rest.find("' not found")?];
    Some(name.rsplit('.').next().unwrap_or(name).to_owned())
}

/// `No field named eventnme.` / `No field named cloudtrail.eventnme.` → the (qualified) name.
fn missing_column(message: &str) -> Option<String> {
    let rest = &message[message.find("No field named ")? + "No field named ".len()..];
    let end = rest.find(|c: char| c.is_whitespace() || c == ',').unwrap_or(rest.len());
    let name = rest[..end].trim_end_matches('.').trim_matches('"');
    (!name.is_empty()).then(|| name.replace('"', ""))
}

/// The candidate closest to `wanted`, if it is close enough to be a typo of it.
fn closest(wanted: &str, candidates: impl IntoIterator<Item = String>) -> Option<String> {
    let wanted = wanted.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let lower = c.to_lowercase();
            // Jaro-Winkler ranks; one edit also counts as close, for short names (arm / arn).
            let one_edit = strsim::damerau_levenshtein(&wanted, &lower) <= 1;
            (strsim::jaro_winkler(&wanted, &lower) + if one_edit { 1.0 } else { 0.0 }, c)
        })
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_out_of_datafusion_errors() {
        assert_eq!(
            missing_table("Error during planning: table 'datafusion.public.cloudtrial' not found").as_deref(),
            Some("cloudtrial")
        );
        assert_eq!(
            missing_column("Schema error: No field named eventnme. Valid fields are cloudtrail.a.").as_deref(),
            Some("eventnme")
        );
        assert_eq!(
            missing_column("Schema error: No field named cloudtrail.eventnme. Valid fields are x.").as_deref(),
            Some("cloudtrail.eventnme")
        );
        assert_eq!(missing_column("Schema error: something else"), None);
        assert_eq!(
            missing_struct_field("Error during planning: Field arm not found in struct").as_deref(),
            Some("arm")
        );
    }

    #[test]
    fn only_close_names_are_suggested() {
        let names = || ["cloudtrail", "vpcflow", "dns", "alerts"].map(String::from);
        assert_eq!(closest("cloudtrial", names()).as_deref(), Some("cloudtrail"));
        assert_eq!(closest("VPCFLOWS", names()).as_deref(), Some("vpcflow"));
        assert_eq!(closest("guardduty", names()), None);
        assert_eq!(closest("arm", ["arn", "type"].map(String::from)).as_deref(), Some("arn"));
        assert_eq!(closest("xyz", ["arn", "type"].map(String::from)), None);
    }
}
