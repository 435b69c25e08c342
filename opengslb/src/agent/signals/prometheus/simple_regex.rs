//! The regex subset accepted by `=~` and `!~` label matchers, matched without
//! a regex engine.

/// An anchored regex made only of single-character atoms and top-level `|`,
/// which is enough to match status codes and similar label values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SimpleRegex {
    alternatives: Vec<Vec<Atom>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Literal(char),
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Literal(expected) => c == *expected,
            Self::Any => true,
            Self::Class { negated, ranges } => {
                ranges.iter().any(|&(low, high)| (low..=high).contains(&c)) != *negated
            }
        }
    }
}

impl SimpleRegex {
    pub(super) fn parse(pattern: &str) -> Result<Self, String> {
        let mut alternatives = vec![Vec::new()];
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let current = alternatives.last_mut().ok_or("internal: no alternative")?;
            match c {
                '|' => alternatives.push(Vec::new()),
                '.' => current.push(Atom::Any),
                '[' => current.push(parse_class(&mut chars)?),
                '\\' => current.push(Atom::Literal(parse_escape(chars.next())?)),
                // Anchors are accepted where they change nothing, since the
                // whole pattern is anchored anyway.
                '^' if current.is_empty() => {}
                '$' if matches!(chars.peek(), None | Some('|')) => {}
                '*' | '+' | '?' | '{' | '}' | '(' | ')' | ']' | '^' | '$' => {
                    return Err(format!(
                        "'{c}' is not supported; only literal characters, '.', \
                         [character classes] and top-level '|' are"
                    ));
                }
                other => current.push(Atom::Literal(other)),
            }
        }
        Ok(Self { alternatives })
    }

    pub(super) fn is_match(&self, text: &str) -> bool {
        self.alternatives.iter().any(|atoms| {
            let mut chars = text.chars();
            atoms
                .iter()
                .all(|atom| chars.next().is_some_and(|c| atom.matches(c)))
                && chars.next().is_none()
        })
    }
}

fn parse_escape(next: Option<char>) -> Result<char, String> {
    match next {
        None => Err("trailing '\\'".to_owned()),
        // `\d`, `\w`, `\b` and friends are classes or assertions, not literals.
        Some(c) if c.is_alphanumeric() => Err(format!("escape '\\{c}' is not supported")),
        Some(c) => Ok(c),
    }
}

fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Atom, String> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars
            .next()
            .ok_or_else(|| "unterminated character class".to_owned())?;
        let low = match c {
            // A `]` right after `[` or `[^` is a literal, as in RE2.
            ']' if !first => break,
            '\\' => parse_escape(chars.next())?,
            '[' => return Err("'[' inside a character class is not supported".to_owned()),
            other => other,
        };
        first = false;
        let mut high = low;
        if chars.peek() == Some(&'-') {
            let mut lookahead = chars.clone();
            lookahead.next();
            // A trailing `-` before `]` is a literal dash.
            if !matches!(lookahead.peek(), Some(']') | None) {
                chars.next();
                high = match chars.next() {
                    Some('\\') => parse_escape(chars.next())?,
                    Some(c) => c,
                    None => return Err("unterminated character class".to_owned()),
                };
                if high < low {
                    return Err(format!("invalid range '{low}-{high}' in character class"));
                }
            }
        }
        ranges.push((low, high));
    }
    Ok(Atom::Class { negated, ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_subset_semantics() {
        let re = |p: &str| SimpleRegex::parse(p).unwrap();
        assert!(re(r"5\.0").is_match("5.0"));
        assert!(!re(r"5\.0").is_match("510"));
        assert!(re("[]x]").is_match("]"));
        assert!(re("[a-]").is_match("-"));
        assert!(re("a|").is_match(""));
        assert!(re("").is_match(""));
        assert!(!re("").is_match("a"));
        assert!(re("..").is_match("é!"));
    }
}
