//! Athena's `CROSS JOIN UNNEST(t.col) AS u(x)`: one row per element of an array column, beside
//! the row it came from — the form AWS's example queries use for CloudTrail's `resources` and
//! Resolver's `answers`.
//!
//! DataFusion plans `unnest(...)` in a select list but not as a table that refers to a column of
//! the table before it (a lateral reference). So a statement is rewritten before it is planned:
//!
//! ```sql
//! FROM cloudtrail t CROSS JOIN UNNEST(t.resources) AS u(r)       -- becomes
//! FROM (SELECT t.*, unnest(t.resources) AS r FROM cloudtrail t) t
//! ```
//!
//! and every `u.<...>` in the statement becomes `t.<...>`, so `t.eventname`, `u.r.arn` and a bare
//! `r.arn` all keep working. The comma form (`FROM t, UNNEST(t.col) AS u(x)`) and several arrays
//! at once (`UNNEST(a, b) AS u(x, y)`, zipped, the shorter padded with NULLs as in Athena) are
//! rewritten the same way, and chained unnests nest. As in Athena, a row whose array is empty or
//! NULL yields no row. `WITH ORDINALITY` is refused with the reason; a statement the rewrite
//! does not recognise is planned as written, so DataFusion's own error reaches the user.

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, JoinOperator, Query, SetExpr, Statement, TableAlias, TableFactor, TableWithJoins, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::ops::ControlFlow;

use datafusion::error::DataFusionError;

use crate::{QueryError, Result};

/// `sql` with every lateral `UNNEST` rewritten into the select list of a derived table; `sql`
/// itself when it has none (or does not parse: the planner then says why).
pub(crate) fn rewrite(sql: &str) -> Result<String> {
    if !sql.to_ascii_lowercase().contains("unnest") {
        return Ok(sql.to_owned());
    }
    let Ok(mut statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Ok(sql.to_owned());
    };
    let mut rewriter = Rewriter::default();
    let _ = statements.visit(&mut rewriter);
    if let Some(message) = rewriter.refused {
        return Err(QueryError::Sql { source: DataFusionError::Plan(message), hint: None });
    }
    if rewriter.renames.is_empty() {
        return Ok(sql.to_owned());
    }
    // Column references are renamed after every FROM is rewritten, in one pass over the whole
    // statement (select list, WHERE, GROUP BY, ORDER BY of the outer query alike).
    let mut renamer = Renamer { renames: rewriter.renames };
    let _ = statements.visit(&mut renamer);
    Ok(statements.iter().map(Statement::to_string).collect::<Vec<_>>().join(";\n"))
}

/// Rewrites the FROM clause of every SELECT, remembering which unnest aliases now mean which
/// table alias.
#[derive(Default)]
struct Rewriter {
    /// (unnest alias, table alias it is folded into), lowercase.
    renames: Vec<(String, Ident)>,
    refused: Option<String>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            let from = std::mem::take(&mut select.from);
            select.from = self.fold_from(from);
        }
        ControlFlow::Continue(())
    }
}

impl Rewriter {
    fn fold_from(&mut self, from: Vec<TableWithJoins>) -> Vec<TableWithJoins> {
        let mut out: Vec<TableWithJoins> = Vec::with_capacity(from.len());
        for mut item in from {
            // The comma form: `FROM t, UNNEST(t.col) AS u(x)` joins onto the item before it,
            // when that item has no joins of its own.
            if matches!(item.relation, TableFactor::UNNEST { .. })
                && item.joins.is_empty()
                && let Some(previous) = out.last_mut().filter(|p| p.joins.is_empty())
            {
                let relation = std::mem::replace(&mut previous.relation, placeholder());
                match self.fold(relation, item.relation) {
                    Ok(folded) => previous.relation = folded,
                    Err(both) => {
                        let (relation, unnest) = *both;
                        previous.relation = relation;
                        out.push(TableWithJoins { relation: unnest, joins: Vec::new() });
                    }
                }
                continue;
            }
            // `FROM t CROSS JOIN UNNEST(...) ...`: fold each leading unnest join into the table.
            let mut joins = std::mem::take(&mut item.joins).into_iter().peekable();
            while let Some(join) = joins.next_if(|j| {
                matches!(j.relation, TableFactor::UNNEST { .. })
                    && matches!(j.join_operator, JoinOperator::CrossJoin(_))
            }) {
                let relation = std::mem::replace(&mut item.relation, placeholder());
                match self.fold(relation, join.relation) {
                    Ok(folded) => item.relation = folded,
                    Err(both) => {
                        let (relation, unnest) = *both;
                        item.relation = relation;
                        item.joins.push(datafusion::sql::sqlparser::ast::Join { relation: unnest, ..join });
                        break;
                    }
                }
            }
            item.joins.extend(joins);
            out.push(item);
        }
        out
    }

    /// `relation CROSS JOIN unnest` as one derived table named like `relation`; both back when
    /// the pair is not a form this rewrite knows.
    fn fold(
        &mut self,
        relation: TableFactor,
        unnest: TableFactor,
    ) -> Result<TableFactor, Box<(TableFactor, TableFactor)>> {
        let TableFactor::UNNEST { alias: Some(alias), array_exprs, with_offset, with_ordinality, .. } = &unnest else {
            return Err(Box::new((relation, unnest)));
        };
        if *with_ordinality || *with_offset {
            self.refused.get_or_insert_with(|| {
                "UNNEST ... WITH ORDINALITY (or WITH OFFSET) is not supported; number the elements with \
                 row_number() OVER (PARTITION BY ...) instead"
                    .to_owned()
            });
            return Err(Box::new((relation, unnest)));
        }
        if alias.columns.len() != array_exprs.len() {
            self.refused.get_or_insert_with(|| {
                format!(
                    "UNNEST(...) AS {}(...) must name one column per array ({} arrays, {} names), as in \
                     `CROSS JOIN UNNEST(t.resources) AS u(r)`",
                    alias.name,
                    array_exprs.len(),
                    alias.columns.len()
                )
            });
            return Err(Box::new((relation, unnest)));
        }
        let Some(name) = relation_name(&relation) else {
            return Err(Box::new((relation, unnest)));
        };
        let columns: Vec<String> = array_exprs
            .iter()
            .zip(&alias.columns)
            .map(|(expr, column)| format!("unnest({expr}) AS {}", column.name))
            .collect();
        let inner = format!("SELECT {name}.*, {} FROM {relation}", columns.join(", "));
        let Ok(subquery) = Parser::new(&GenericDialect {}).try_with_sql(&inner).and_then(|mut p| p.parse_query())
        else {
            return Err(Box::new((relation, unnest)));
        };
        self.renames.push((alias.name.value.to_lowercase(), name.clone()));
        Ok(TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(TableAlias { explicit: true, name, columns: Vec::new(), at: None }),
            sample: None,
        })
    }
}

/// The name a FROM item is referred to by: its alias, else a table's last name part.
fn relation_name(relation: &TableFactor) -> Option<Ident> {
    match relation {
        TableFactor::Table { alias: Some(alias), .. } | TableFactor::Derived { alias: Some(alias), .. } => {
            alias.columns.is_empty().then(|| alias.name.clone())
        }
        TableFactor::Table { name, alias: None, .. } => name.0.last()?.as_ident().cloned(),
        _ => None,
    }
}

/// A FROM item held only while its real one is moved out.
fn placeholder() -> TableFactor {
    TableFactor::UNNEST {
        alias: None,
        array_exprs: Vec::new(),
        with_offset: false,
        with_offset_alias: None,
        with_ordinality: false,
    }
}

/// Renames `u.x...` to `t.x...` for every unnest alias folded into table alias `t`.
struct Renamer {
    renames: Vec<(String, Ident)>,
}

impl VisitorMut for Renamer {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() >= 2
            && let Some((_, table)) = self.renames.iter().find(|(from, _)| parts[0].value.to_lowercase() == *from)
        {
            parts[0] = table.clone();
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squash(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn a_cross_join_unnest_becomes_a_derived_table_named_like_the_table() {
        let sql = "SELECT u.r.arn, t.eventname FROM cloudtrail t CROSS JOIN UNNEST(t.resources) AS u (r) \
                   WHERE u.r.arn LIKE '%x' ORDER BY t.eventtime";
        assert_eq!(
            squash(&rewrite(sql).expect("rewrites")),
            "SELECT t.r.arn, t.eventname FROM (SELECT t.*, unnest(t.resources) AS r FROM cloudtrail t) AS t \
             WHERE t.r.arn LIKE '%x' ORDER BY t.eventtime"
        );
    }

    #[test]
    fn the_comma_form_a_bare_table_and_two_arrays() {
        let sql = "SELECT x, y FROM dns, UNNEST(dns.answers, dns.answers) u(x, y)";
        assert_eq!(
            squash(&rewrite(sql).expect("rewrites")),
            "SELECT x, y FROM (SELECT dns.*, unnest(dns.answers) AS x, unnest(dns.answers) AS y FROM dns) AS dns"
        );
    }

    #[test]
    fn chained_unnests_nest() {
        let sql = "SELECT b FROM t CROSS JOIN UNNEST(t.xs) AS u(a) CROSS JOIN UNNEST(u.a.ys) AS v(b)";
        let out = squash(&rewrite(sql).expect("rewrites"));
        assert_eq!(
            out,
            "SELECT b FROM (SELECT t.*, unnest(t.a.ys) AS b FROM (SELECT t.*, unnest(t.xs) AS a FROM t) AS t) AS t"
        );
    }

    #[test]
    fn statements_without_a_lateral_unnest_are_left_alone() {
        for sql in ["SELECT unnest(resources) FROM cloudtrail", "SELECT 1", "SELEC nonsense unnest("] {
            assert_eq!(rewrite(sql).expect("rewrites"), sql);
        }
    }

    #[test]
    fn ordinality_and_missing_column_names_are_refused_with_the_reason() {
        let err = rewrite("SELECT * FROM t CROSS JOIN UNNEST(t.xs) WITH ORDINALITY AS u(a, n)").expect_err("refused");
        assert!(err.to_string().contains("WITH ORDINALITY"), "{err}");
        let err = rewrite("SELECT * FROM t CROSS JOIN UNNEST(t.xs, t.ys) AS u(a)").expect_err("refused");
        assert!(err.to_string().contains("one column per array"), "{err}");
    }
}
