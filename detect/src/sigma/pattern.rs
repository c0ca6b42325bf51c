//! Sigma string values: their wildcards and escapes, and the SQL test each becomes.
//!
//! In a Sigma string `*` matches any run of characters and `?` exactly one; a backslash escapes
//! only `*`, `?` and itself, and before anything else it is a plain backslash (so `C:\Windows`
//! needs no doubling). A string without wildcards matches the whole value, case-insensitively
//! unless the rule says `|cased`. A pattern becomes SQL equality when it has no wildcard, a
//! `LIKE` (`ILIKE` when case does not matter) with `%`/`_`, the literal `%`, `_` and `\`
//! escaped, when it has some, and a presence test when it is a lone `*`.

/// One piece of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Characters matched as they are.
    Text(String),
    /// `*`: any run of characters, the empty one included.
    AnyRun,
    /// `?`: exactly one character.
    AnyOne,
}

/// A Sigma string as pieces; adjacent text is merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern(pub Vec<Piece>);

impl Pattern {
    /// Reads a Sigma string with its wildcards and escapes.
    pub fn parse(text: &str) -> Pattern {
        let mut pattern = Pattern::default();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => pattern.0.push(Piece::AnyRun),
                '?' => pattern.0.push(Piece::AnyOne),
                '\\' => match chars.peek() {
                    Some(&next @ ('*' | '?' | '\\')) => {
                        chars.next();
                        pattern.push_char(next);
                    }
                    // A backslash before anything else, or at the end, is itself.
                    _ => pattern.push_char('\\'),
                },
                c => pattern.push_char(c),
            }
        }
        pattern
    }

    /// Text matched as it is, with no wildcard in it.
    pub fn literal(text: &str) -> Pattern {
        let mut pattern = Pattern::default();
        for c in text.chars() {
            pattern.push_char(c);
        }
        pattern
    }

    fn push_char(&mut self, c: char) {
        match self.0.last_mut() {
            Some(Piece::Text(text)) => text.push(c),
            _ => self.0.push(Piece::Text(c.to_string())),
        }
    }

    /// `*` before the pattern unless it starts with one: what `|endswith` and `|contains` add.
    pub fn any_before(mut self) -> Pattern {
        if self.0.first() != Some(&Piece::AnyRun) {
            self.0.insert(0, Piece::AnyRun);
        }
        self
    }

    /// `*` after the pattern unless it ends with one: what `|startswith` and `|contains` add.
    pub fn any_after(mut self) -> Pattern {
        if self.0.last() != Some(&Piece::AnyRun) {
            self.0.push(Piece::AnyRun);
        }
        self
    }

    /// The text of a pattern without wildcards; `None` when it has one.
    pub fn as_text(&self) -> Option<String> {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the pattern is only `*`s: it matches every value that is there.
    pub fn matches_anything(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|piece| *piece == Piece::AnyRun)
    }

    /// The pattern lowercased, for a case-insensitive match against `lower(<value>)`.
    pub fn lowercase(&self) -> Pattern {
        Pattern(
            self.0
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => Piece::Text(text.to_lowercase()),
                    other => other.clone(),
                })
                .collect(),
        )
    }

    /// The SQL `LIKE` pattern, escaping with a backslash.
    pub fn like(&self) -> String {
        let mut like = String::new();
        for piece in &self.0 {
            match piece {
                Piece::AnyRun => like.push('%'),
                Piece::AnyOne => like.push('_'),
                Piece::Text(text) => {
                    for c in text.chars() {
                        if matches!(c, '%' | '_' | '\\') {
                            like.push('\\');
                        }
                        like.push(c);
                    }
                }
            }
        }
        like
    }

    /// The SQL that is true when `value` (an SQL expression of text) matches: case-insensitively
    /// unless `cased`.
    pub fn sql(&self, value: &str, cased: bool) -> String {
        if self.matches_anything() {
            return format!("{value} IS NOT NULL");
        }
        // Equality lowercases the value (an `IN` list of such tests is what the shared CloudTrail
        // read recognises); a pattern is `ILIKE`, which matches without building the lowercased
        // copy of every value that `lower(x) LIKE` needs.
        match (self.as_text(), cased) {
            (Some(text), true) => format!("{value} = {}", quote(&text)),
            (Some(_), false) => format!("lower({value}) = {}", quote(&self.lowercase().as_text().unwrap_or_default())),
            (None, true) => format!("{value} LIKE {} ESCAPE '\\'", quote(&self.like())),
            (None, false) => format!("{value} ILIKE {} ESCAPE '\\'", quote(&self.like())),
        }
    }
}

/// `text` as an SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_escapes_read_as_the_specification_says() {
        use Piece::*;
        let text = |t: &str| Text(t.to_owned());
        assert_eq!(Pattern::parse("a*b?c").0, vec![text("a"), AnyRun, text("b"), AnyOne, text("c")]);
        assert_eq!(Pattern::parse(r"a\*b\?").0, vec![text("a*b?")]);
        assert_eq!(Pattern::parse(r"C:\Windows").0, vec![text(r"C:\Windows")]);
        assert_eq!(Pattern::parse(r"C:\\Windows").0, vec![text(r"C:\Windows")]);
        // `\\*` is a backslash and then the wildcard; `\\\*` a backslash and a star.
        assert_eq!(Pattern::parse(r"x\\*").0, vec![text(r"x\"), AnyRun]);
        assert_eq!(Pattern::parse(r"x\\\*").0, vec![text(r"x\*")]);
        assert_eq!(Pattern::parse(r"x\\\\").0, vec![text(r"x\\")]);
        assert_eq!(Pattern::parse(r"trailing\").0, vec![text(r"trailing\")]);
        assert_eq!(Pattern::parse("").0, vec![]);
    }

    #[test]
    fn patterns_become_equality_like_or_presence() {
        assert_eq!(Pattern::parse("StopLogging").sql("eventname", false), "lower(eventname) = 'stoplogging'");
        assert_eq!(Pattern::parse("StopLogging").sql("eventname", true), "eventname = 'StopLogging'");
        assert_eq!(Pattern::parse("it's").sql("x", true), "x = 'it''s'");
        assert_eq!(
            Pattern::parse("$AWS_CONTAINER*").any_before().sql("c", false),
            r"c ILIKE '%$AWS\_CONTAINER%' ESCAPE '\'"
        );
        assert_eq!(Pattern::parse("50%?").sql("c", true), r"c LIKE '50\%_' ESCAPE '\'");
        assert_eq!(Pattern::parse(r"a\b*").sql("c", true), r"c LIKE 'a\\b%' ESCAPE '\'");
        // `contains: '*'` is any value at all.
        assert_eq!(Pattern::parse("*").any_before().any_after().sql("c", false), "c IS NOT NULL");
        assert_eq!(Pattern::parse("").sql("c", false), "lower(c) = ''");
    }
}
