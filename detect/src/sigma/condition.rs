//! The `condition` of a Sigma detection: `and`, `or`, `not`, parentheses, and `1 of` / `all of`
//! a name pattern or `them`, resolved against the rule's search identifiers.
//!
//! Precedence, loosest first: `or`, `and`, `not`, `x of`, parentheses; `and` and `or` group to
//! the left. `them` and a pattern that does not itself start with `_` leave out the identifiers
//! that do (Sigma's convention for helper selections). A pattern that matches no identifier, an
//! unknown identifier and the obsolete `| count()` aggregations are errors, never a silent
//! always-false.

/// A parsed condition over search identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The search identifier of that name.
    Search(String),
    /// True when the inner condition is not.
    Not(Box<Condition>),
    /// True when every part is.
    All(Vec<Condition>),
    /// True when any part is.
    Any(Vec<Condition>),
}

/// Parses `text` over the search identifiers `names`; the error says what is wrong.
pub fn parse(text: &str, names: &[String]) -> Result<Condition, String> {
    if text.contains('|') {
        return Err(format!(
            "condition {text:?} uses the obsolete `| count()`/`| near` aggregation; write it as a Sigma correlation rule"
        ));
    }
    let tokens = tokens(text)?;
    let mut parser = Parser { tokens: &tokens, at: 0, names };
    let condition = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(condition),
        Some(token) => Err(format!("condition {text:?}: unexpected {token:?}")),
    }
}

fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        match c {
            '(' | ')' => {
                if !word.is_empty() {
                    tokens.push(std::mem::take(&mut word));
                }
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    tokens.push(std::mem::take(&mut word));
                }
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '*' | '.') => word.push(c),
            c => return Err(format!("condition {text:?}: unexpected character {c:?}")),
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    if tokens.is_empty() {
        return Err("the condition is empty".into());
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: &'a [String],
    at: usize,
    names: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek().is_some_and(|token| token.eq_ignore_ascii_case(keyword));
        if found {
            self.at += 1;
        }
        found
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Condition::Any(parts) })
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut parts = vec![self.not()?];
        while self.keyword("and") {
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Condition::All(parts) })
    }

    fn not(&mut self) -> Result<Condition, String> {
        if self.keyword("not") {
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Condition, String> {
        let Some(token) = self.peek().map(str::to_owned) else {
            return Err("the condition ends where a search identifier was expected".into());
        };
        self.at += 1;
        if token == "(" {
            let inner = self.or()?;
            if !self.keyword(")") {
                return Err("a parenthesis in the condition is not closed".into());
            }
            return Ok(inner);
        }
        let quantifier = token.to_ascii_lowercase();
        if matches!(quantifier.as_str(), "1" | "any" | "all") && self.keyword("of") {
            let Some(pattern) = self.peek().map(str::to_owned) else {
                return Err(format!("`{token} of` names no pattern"));
            };
            self.at += 1;
            let matched = self.expand(&pattern)?;
            let parts: Vec<Condition> = matched.into_iter().map(Condition::Search).collect();
            return Ok(match (quantifier.as_str(), parts.len()) {
                (_, 1) => parts.into_iter().next().expect("one part"),
                ("all", _) => Condition::All(parts),
                _ => Condition::Any(parts),
            });
        }
        if matches!(token.as_str(), ")" | "and" | "or" | "of") {
            return Err(format!("unexpected {token:?} where a search identifier was expected"));
        }
        if !self.names.contains(&token) {
            return Err(format!("the condition names {token:?}, which the detection does not define"));
        }
        Ok(Condition::Search(token))
    }

    /// The identifiers `pattern` (or `them`) stands for, in the detection's order.
    fn expand(&self, pattern: &str) -> Result<Vec<String>, String> {
        let (glob, keep_helpers) = match pattern {
            "them" => ("*", false),
            p => (p, p.starts_with('_')),
        };
        let matched: Vec<String> = self
            .names
            .iter()
            .filter(|name| keep_helpers || !name.starts_with('_'))
            .filter(|name| glob_matches(glob, name))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(format!("`of {pattern}` matches no search identifier"));
        }
        Ok(matched)
    }
}

/// Whether `name` matches `glob`, where `*` is any run of characters.
fn glob_matches(glob: &str, name: &str) -> bool {
    match glob.split_once('*') {
        None => glob == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).filter(|&at| tail.is_char_boundary(at)).any(|at| glob_matches(rest, &tail[at..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Condition::*;
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn s(name: &str) -> Condition {
        Search(name.to_owned())
    }

    #[test]
    fn precedence_is_or_then_and_then_not() {
        let n = names(&["a", "b", "c"]);
        assert_eq!(parse("a and not b or c", &n), Ok(Any(vec![All(vec![s("a"), Not(Box::new(s("b")))]), s("c")])));
        assert_eq!(parse("a and (b or c)", &n), Ok(All(vec![s("a"), Any(vec![s("b"), s("c")])])));
        assert_eq!(parse("not not a", &n), Ok(Not(Box::new(Not(Box::new(s("a")))))));
        assert_eq!(parse("a AND b", &n), Ok(All(vec![s("a"), s("b")])));
    }

    #[test]
    fn quantifiers_expand_patterns_and_them() {
        let n = names(&["selection", "filter_main_a", "filter_main_b", "filter1", "_helper"]);
        assert_eq!(
            parse("selection and not 1 of filter_main_*", &n),
            Ok(All(vec![s("selection"), Not(Box::new(Any(vec![s("filter_main_a"), s("filter_main_b")])))]))
        );
        assert_eq!(parse("all of filter*", &n), Ok(All(vec![s("filter_main_a"), s("filter_main_b"), s("filter1")])));
        // `them` leaves out the helpers that start with `_`; a `_` pattern keeps them.
        assert_eq!(parse("1 of them", &n).map(|c| matches!(c, Any(ref p) if p.len() == 4)), Ok(true));
        assert_eq!(parse("1 of _h*", &n), Ok(s("_helper")));
        assert_eq!(parse("any of selection", &n), Ok(s("selection")));
    }

    #[test]
    fn what_cannot_be_resolved_is_an_error() {
        let n = names(&["selection"]);
        assert!(parse("selection and filter", &n).unwrap_err().contains("\"filter\""));
        assert!(parse("1 of filter_*", &n).unwrap_err().contains("matches no search identifier"));
        assert!(parse("selection | count() > 5", &n).unwrap_err().contains("correlation"));
        assert!(parse("(selection", &n).unwrap_err().contains("not closed"));
        assert!(parse("selection and", &n).is_err());
        assert!(parse("", &n).is_err());
        assert!(parse("selection selection", &n).is_err());
        assert!(parse("selection = 1", &n).is_err());
    }
}
