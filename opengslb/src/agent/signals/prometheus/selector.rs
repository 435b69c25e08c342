//! Parser for Prometheus instant-vector selectors such as
//! `http_requests_total{code=~"5.."}`.

use std::str::FromStr;

use super::cursor::Cursor;
use super::simple_regex::SimpleRegex;

/// Why a [`MetricSelector`] could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector text was empty.
    #[error("empty metric selector")]
    Empty,
    /// The selector did not start with a metric name.
    #[error("metric selector must start with a metric name")]
    MissingName,
    /// The metric name has characters outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {0:?}")]
    InvalidName(String),
    /// A label name has characters outside `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {0:?}")]
    InvalidLabel(String),
    /// A label was not followed by `=`, `!=`, `=~` or `!~`.
    #[error("label {0:?} must be followed by =, !=, =~ or !~")]
    MissingOperator(String),
    /// The value after an operator was not double-quoted.
    #[error("value for label {0:?} must be a double-quoted string")]
    ExpectedQuotedValue(String),
    /// A quoted value had no closing quote.
    #[error("unterminated quoted value for label {0:?}")]
    UnterminatedValue(String),
    /// A regex uses syntax beyond the supported subset.
    #[error("unsupported regex {pattern:?} for label {label:?}: {reason}")]
    UnsupportedRegex {
        /// Label the regex applies to.
        label: String,
        /// The regex as written.
        pattern: String,
        /// What in the regex is not supported.
        reason: String,
    },
    /// Something other than `,` or `}` followed a matcher.
    #[error("expected ',' or '}}' after the matcher for label {0:?}")]
    ExpectedSeparator(String),
    /// The label list was never closed.
    #[error("missing closing '}}'")]
    Unclosed,
    /// Text followed the end of the selector.
    #[error("unexpected text {0:?} after the selector")]
    TrailingText(String),
}

/// A Prometheus instant-vector selector such as `http_requests_total{code=~"5.."}`.
///
/// Regex matchers (`=~`, `!~`) support a subset that covers what is common in
/// practice without a regex engine: literal characters, `.`, character
/// classes (`[45]`, `[0-9]`, `[^2]`), `\` before a punctuation character, and
/// `|` between alternatives. As in Prometheus, regexes are fully anchored and
/// a missing label matches as the empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSelector {
    name: String,
    matchers: Vec<LabelMatcher>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelMatcher {
    label: String,
    kind: MatchKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MatchKind {
    Equal(String),
    NotEqual(String),
    Matches(SimpleRegex),
    NotMatches(SimpleRegex),
}

impl LabelMatcher {
    fn matches(&self, value: &str) -> bool {
        match &self.kind {
            MatchKind::Equal(expected) => value == expected,
            MatchKind::NotEqual(expected) => value != expected,
            MatchKind::Matches(regex) => regex.is_match(value),
            MatchKind::NotMatches(regex) => !regex.is_match(value),
        }
    }
}

impl MetricSelector {
    /// The metric name a series must have.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn matches_labels(&self, labels: &[(&str, String)]) -> bool {
        self.matchers.iter().all(|matcher| {
            let value = labels
                .iter()
                .find(|(name, _)| *name == matcher.label)
                .map_or("", |(_, value)| value.as_str());
            matcher.matches(value)
        })
    }
}

impl FromStr for MetricSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SelectorError::Empty);
        }
        let mut cursor = Cursor::new(text);
        let name = cursor.take_while(|c| c != '{' && !c.is_whitespace());
        if name.is_empty() {
            return Err(SelectorError::MissingName);
        }
        if !is_metric_name(name) {
            return Err(SelectorError::InvalidName(name.to_owned()));
        }
        cursor.skip_spaces();
        let mut matchers = Vec::new();
        if cursor.eat('{') {
            loop {
                cursor.skip_spaces();
                if cursor.eat('}') {
                    break;
                }
                if cursor.at_end() {
                    return Err(SelectorError::Unclosed);
                }
                matchers.push(parse_matcher(&mut cursor)?);
                cursor.skip_spaces();
                if cursor.eat(',') {
                    continue;
                }
                if cursor.eat('}') {
                    break;
                }
                if cursor.at_end() {
                    return Err(SelectorError::Unclosed);
                }
                let label = matchers.last().map(|m| m.label.clone()).unwrap_or_default();
                return Err(SelectorError::ExpectedSeparator(label));
            }
            cursor.skip_spaces();
        }
        if !cursor.at_end() {
            return Err(SelectorError::TrailingText(cursor.rest().to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            matchers,
        })
    }
}

fn parse_matcher(cursor: &mut Cursor<'_>) -> Result<LabelMatcher, SelectorError> {
    let label = cursor.take_while(|c| !matches!(c, '=' | '!' | ',' | '}') && !c.is_whitespace());
    if !is_label_name(label) {
        return Err(SelectorError::InvalidLabel(label.to_owned()));
    }
    let label = label.to_owned();
    cursor.skip_spaces();
    // Two-character operators first, or `=~` would be read as `=`.
    let operator = ["=~", "!~", "!=", "="]
        .into_iter()
        .find(|op| cursor.eat_str(op))
        .ok_or_else(|| SelectorError::MissingOperator(label.clone()))?;
    cursor.skip_spaces();
    if !cursor.eat('"') {
        return Err(SelectorError::ExpectedQuotedValue(label));
    }
    let Some(value) = cursor.quoted() else {
        return Err(SelectorError::UnterminatedValue(label));
    };
    let regex = |value: String| {
        SimpleRegex::parse(&value).map_err(|reason| SelectorError::UnsupportedRegex {
            label: label.clone(),
            pattern: value,
            reason,
        })
    };
    let kind = match operator {
        "=~" => MatchKind::Matches(regex(value)?),
        "!~" => MatchKind::NotMatches(regex(value)?),
        "!=" => MatchKind::NotEqual(value),
        _ => MatchKind::Equal(value),
    };
    Ok(LabelMatcher { label, kind })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::prometheus::sum_matching;
    use crate::agent::signals::test_support::{assert_close, selector};

    #[test]
    fn selector_accepts_all_operators() {
        let s = selector(r#"x{a="1",b!="2"}"#);
        assert_eq!(s.name(), "x");
        assert_close(
            sum_matching("x{a=\"1\",b=\"3\"} 2\nx{a=\"1\",b=\"2\"} 5\n", &s),
            2.0,
        );
        let s = selector(r#" x { a =~ "1|2" , b !~ "2" } "#);
        assert_close(
            sum_matching("x{a=\"2\",b=\"3\"} 2\nx{a=\"3\"} 5\n", &s),
            2.0,
        );
        assert!("x{}".parse::<MetricSelector>().is_ok());
        assert!(r"x{a=~'1'}".parse::<MetricSelector>().is_err());
    }

    #[test]
    fn selector_errors_name_the_problem() {
        let err = |text: &str| text.parse::<MetricSelector>().unwrap_err();
        assert_eq!(err("  "), SelectorError::Empty);
        assert_eq!(err(r#"{a="1"}"#), SelectorError::MissingName);
        assert_eq!(err("1abc"), SelectorError::InvalidName("1abc".into()));
        assert_eq!(
            err(r#"x{1a="1"}"#),
            SelectorError::InvalidLabel("1a".into())
        );
        assert_eq!(err("x{a}"), SelectorError::MissingOperator("a".into()));
        assert_eq!(
            err("x{a=1}"),
            SelectorError::ExpectedQuotedValue("a".into())
        );
        assert_eq!(
            err(r#"x{a="1}"#),
            SelectorError::UnterminatedValue("a".into())
        );
        assert_eq!(err(r#"x{a="1""#), SelectorError::Unclosed);
        assert_eq!(
            err(r#"x{a="1" b="2"}"#),
            SelectorError::ExpectedSeparator("a".into())
        );
        assert_eq!(
            err(r#"x{a="1"} y"#),
            SelectorError::TrailingText("y".into())
        );
        assert_eq!(err("x y"), SelectorError::TrailingText("y".into()));
    }

    #[test]
    fn selector_rejects_unsupported_regex_clearly() {
        for (pattern, needle) in [
            ("5.*", "'*'"),
            ("5+", "'+'"),
            ("(500|503)", "'('"),
            ("5.?", "'?'"),
            ("5{2}", "'{'"),
            (r"\d+", r"'\d'"),
            ("[45", "unterminated"),
            ("[9-0]", "invalid range"),
            ("a^b", "'^'"),
            ("a$b", "'$'"),
        ] {
            let text = format!(r#"x{{code=~"{pattern}"}}"#);
            let err = text.parse::<MetricSelector>().unwrap_err();
            assert!(
                matches!(&err, SelectorError::UnsupportedRegex { label, .. } if label == "code"),
                "{pattern}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(needle), "{pattern}: {message}");
            assert!(message.contains("code"), "{pattern}: {message}");
        }
    }
}
