//! Time travel: `<table> VERSION AS OF <n>` and `<table> TIMESTAMP AS OF '<time>'` in a
//! statement, reading a lake table as an earlier Delta version had it.
//!
//! DataFusion's SQL planner has no table versions, so a statement is rewritten before it is
//! planned: each `cloudtrail VERSION AS OF 3` becomes `"cloudtrail@v3" AS cloudtrail`, a table
//! registered in the session at that version (the alias keeps `cloudtrail.eventname` and the
//! like working; an alias the statement gives is kept instead). `TIMESTAMP AS OF` is resolved to
//! the newest version committed at or before the time, read as UTC (`'2025-03-01 00:00:00'`,
//! `'2025-03-01T00:00:00Z'` or `'2025-03-01'`), and registered under that version's name. A
//! version's rows never change, so a name once registered is reused by later statements. Only
//! the six lake tables can travel, not the views over them (`alerts`, `region_baseline`).
//!
//! A version is readable as long as its files are on storage: `bunker vacuum` deletes the files
//! of versions older than its retention period, after which reading them fails.

use std::collections::HashMap;

use bunker_schemas::{LogTable, alerts, baseline, ingest_log};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use url::Url;

use crate::{QueryError, Result, TimeSpan, delta_provider, register, table_error};

/// Where a session's tables are, to open them at other versions.
#[derive(Debug, Clone)]
pub(crate) struct TimeTravel {
    root: Url,
    storage_options: HashMap<String, String>,
}

/// Which version of a table a statement asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AsOf {
    Version(u64),
    Timestamp(DateTime<Utc>),
}

/// One `<table> … AS OF …` found in a statement: the byte range it spans, the table, the
/// version asked for, and whether the statement aliases it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Travel {
    range: std::ops::Range<usize>,
    table: String,
    quoted: bool,
    as_of: AsOf,
    aliased: bool,
}

impl TimeTravel {
    pub(crate) fn new(root: Url, storage_options: HashMap<String, String>) -> TimeTravel {
        TimeTravel { root, storage_options }
    }

    /// `sql` with every `<table> … AS OF …` replaced by the table registered at that version
    /// (registering it in `ctx` if it is not yet); `sql` itself when it has none.
    pub(crate) async fn rewrite(&self, ctx: &SessionContext, span: TimeSpan, sql: &str) -> Result<String> {
        let travels = find(sql)?;
        if travels.is_empty() {
            return Ok(sql.to_owned());
        }
        let mut rewritten = String::with_capacity(sql.len());
        let mut at = 0;
        for travel in travels {
            let name = self.register(ctx, span, &travel.table, &travel.as_of).await?;
            rewritten.push_str(&sql[at..travel.range.start]);
            rewritten.push_str(&quote(&name));
            if !travel.aliased {
                rewritten.push_str(" AS ");
                rewritten.push_str(&if travel.quoted { quote(&travel.table) } else { travel.table.clone() });
            }
            at = travel.range.end;
        }
        rewritten.push_str(&sql[at..]);
        Ok(rewritten)
    }

    /// Registers `table` at `as_of` (once per version) and returns the name it is registered as.
    async fn register(&self, ctx: &SessionContext, span: TimeSpan, table: &str, as_of: &AsOf) -> Result<String> {
        if let AsOf::Version(version) = as_of {
            let name = versioned_name(table, *version);
            if ctx.table_exist(name.as_str())? {
                return Ok(name);
            }
        }
        let url = self.root.join(&format!("{table}/")).map_err(|_| QueryError::NoLake(self.root.to_string()))?;
        let builder = deltalake::DeltaTableBuilder::from_url(url)
            .map_err(|e| table_error(table, e))?
            .with_storage_options(self.storage_options.clone());
        let builder = match as_of {
            AsOf::Version(version) => builder.with_version(*version),
            AsOf::Timestamp(time) => builder.with_timestamp(*time),
        };
        let delta = builder.load().await.map_err(|e| table_error(table, e))?;
        let version = delta.version().ok_or_else(|| {
            table_error(table, deltalake::DeltaTableError::Generic(format!("no version of {table} as of {as_of:?}")))
        })?;
        let name = versioned_name(table, version);
        if ctx.table_exist(name.as_str())? {
            return Ok(name);
        }
        // As the session's own tables are: files checked, struct-field pruning, the session's span.
        let provider = delta_provider(ctx, table, &delta).await?;
        register(ctx, span, table, &name, provider)?;
        Ok(name)
    }
}

/// The name a table is registered as at one version.
fn versioned_name(table: &str, version: u64) -> String {
    format!("{table}@v{version}")
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The lake tables that can travel.
fn travels(name: &str) -> bool {
    LogTable::from_name(name).is_some()
        || [ingest_log::TABLE_NAME, alerts::TABLE_NAME, baseline::TABLE_NAME].contains(&name)
}

/// Every `<table> VERSION AS OF n` / `<table> TIMESTAMP AS OF '…'` of a statement, in order.
/// A statement the tokenizer refuses is returned as having none: the planner says what is wrong.
fn find(sql: &str) -> Result<Vec<Travel>> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Ok(Vec::new());
    };
    let offsets = LineOffsets::new(sql);
    // Tokens that matter, with their index in `tokens` (whitespace and comments dropped).
    let solid: Vec<&TokenWithSpan> = tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
    let word = |i: usize, text: &str| {
        solid.get(i).is_some_and(
            |t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text)),
        )
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < solid.len() {
        let Token::Word(table) = &solid[i].token else {
            i += 1;
            continue;
        };
        let name = if table.quote_style.is_some() { table.value.clone() } else { table.value.to_ascii_lowercase() };
        let kind = if word(i + 1, "VERSION") {
            Some(true)
        } else if word(i + 1, "TIMESTAMP") {
            Some(false)
        } else {
            None
        };
        let Some(by_version) = kind.filter(|_| travels(&name) && word(i + 2, "AS") && word(i + 3, "OF")) else {
            i += 1;
            continue;
        };
        let value = solid.get(i + 4).map(|t| &t.token);
        let as_of = match (by_version, value) {
            (true, Some(Token::Number(n, _))) => AsOf::Version(n.parse().map_err(|_| {
                sql_error(format!("{name} VERSION AS OF {n}: a version is a whole number (0, 1, 2, …)"))
            })?),
            (false, Some(Token::SingleQuotedString(text))) => AsOf::Timestamp(parse_time(text).ok_or_else(|| {
                sql_error(format!(
                    "{name} TIMESTAMP AS OF '{text}': expected 'YYYY-MM-DD HH:MM:SS' (UTC), an RFC 3339 time, or 'YYYY-MM-DD'"
                ))
            })?),
            (true, _) => return Err(sql_error(format!("{name} VERSION AS OF needs a version number"))),
            (false, _) => return Err(sql_error(format!("{name} TIMESTAMP AS OF needs a quoted time"))),
        };
        let start = offsets.byte(sql, &solid[i].span.start);
        let end = offsets.byte(sql, &solid[i + 4].span.end);
        // An alias follows: `AS c`, or a bare name that is no keyword (`cloudtrail … 3 c`).
        let aliased = solid.get(i + 5).is_some_and(|t| match &t.token {
            Token::Word(w) => {
                w.value.eq_ignore_ascii_case("AS")
                    || w.quote_style.is_some()
                    || w.keyword == datafusion::sql::sqlparser::keywords::Keyword::NoKeyword
            }
            _ => false,
        });
        found.push(Travel { range: start..end, table: name, quoted: table.quote_style.is_some(), as_of, aliased });
        i += 5;
    }
    Ok(found)
}

fn sql_error(message: String) -> QueryError {
    QueryError::Sql { source: datafusion::error::DataFusionError::Plan(message), hint: None }
}

/// A time as `TIMESTAMP AS OF` takes it, in UTC.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// Byte offsets of the tokenizer's (line, column) locations, both counted from 1, columns in
/// characters.
struct LineOffsets(Vec<usize>);

impl LineOffsets {
    fn new(sql: &str) -> LineOffsets {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineOffsets(starts)
    }

    fn byte(&self, sql: &str, location: &datafusion::sql::sqlparser::tokenizer::Location) -> usize {
        let line = usize::try_from(location.line).unwrap_or(1).max(1);
        let start = self.0.get(line - 1).copied().unwrap_or(sql.len());
        let column = usize::try_from(location.column).unwrap_or(1).max(1) - 1;
        sql[start..].char_indices().nth(column).map_or(sql.len(), |(i, _)| start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements the rewrite finds its `AS OF`s in, and those it leaves alone.
    #[test]
    fn finds_version_and_timestamp_clauses() {
        let at = |text: &str| parse_time(text).expect("time");
        let cases: [(&str, Vec<(&str, AsOf, bool, &str)>); 7] = [
            ("SELECT count(*) FROM cloudtrail", vec![]),
            (
                "SELECT count(*) FROM cloudtrail VERSION AS OF 3",
                vec![("cloudtrail", AsOf::Version(3), false, "cloudtrail VERSION AS OF 3")],
            ),
            (
                "select * from CloudTrail version as of 12 t1 where t1.eventname = 'x'",
                vec![("cloudtrail", AsOf::Version(12), true, "CloudTrail version as of 12")],
            ),
            (
                "SELECT 1 FROM dns TIMESTAMP AS OF '2025-03-01 00:00:00' AS d\nJOIN vpcflow VERSION AS OF 0 ON true",
                vec![
                    (
                        "dns",
                        AsOf::Timestamp(at("2025-03-01T00:00:00Z")),
                        true,
                        "dns TIMESTAMP AS OF '2025-03-01 00:00:00'",
                    ),
                    ("vpcflow", AsOf::Version(0), false, "vpcflow VERSION AS OF 0"),
                ],
            ),
            // Not a lake table, or not the clause: untouched.
            ("SELECT * FROM alerts VERSION AS OF 2", vec![]),
            ("SELECT 'cloudtrail VERSION AS OF 3' AS t", vec![]),
            (
                "SELECT 'é' AS e, n FROM \"ingest_log\" VERSION AS OF 1",
                vec![("ingest_log", AsOf::Version(1), false, "\"ingest_log\" VERSION AS OF 1")],
            ),
        ];
        for (sql, expected) in cases {
            let found = find(sql).expect("find");
            let got: Vec<_> =
                found.iter().map(|t| (t.table.as_str(), t.as_of.clone(), t.aliased, &sql[t.range.clone()])).collect();
            assert_eq!(got, expected, "{sql}");
        }
        for bad in ["SELECT 1 FROM cloudtrail VERSION AS OF 'x'", "SELECT 1 FROM cloudtrail TIMESTAMP AS OF 'soon'"] {
            assert!(find(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_times_as_utc() {
        let cases = [
            ("2025-03-01 00:00:00", "2025-03-01T00:00:00+00:00"),
            ("2025-03-01 12:30:15.5", "2025-03-01T12:30:15.500+00:00"),
            ("2025-03-01T12:30:15+02:00", "2025-03-01T10:30:15+00:00"),
            ("2025-03-01", "2025-03-01T00:00:00+00:00"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_time(text).map(|t| t.to_rfc3339()).as_deref(), Some(expected), "{text}");
        }
        assert_eq!(parse_time("yesterday"), None);
    }
}
