//! Prometheus instant-vector selectors such as `http_requests_total{code=~"5.."}`.
//!
//! They are parsed once, when the config is read, so validation refuses exactly what the agent could not use.

mod cursor;

use std::fmt;
use std::str::FromStr;

use regex_lite::Regex;

pub(crate) use cursor::Cursor;

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
    /// A regex does not compile.
    #[error("invalid regex {pattern:?} for label {label:?}: {reason}")]
    InvalidRegex {
        /// Label the regex applies to.
        label: String,
        /// The regex as written.
        pattern: String,
        /// Why it does not compile.
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
/// Regex matchers (`=~`, `!~`) take Prometheus' RE2 syntax as far as
/// `regex-lite` supports it (no Unicode classes such as `\pL`; `\d`, `\w` and
/// `\s` are ASCII). As in Prometheus, regexes are fully anchored, `.` also
/// matches a newline, and a missing label matches as the empty string.
#[derive(Clone)]
pub struct MetricSelector {
    text: String,
    name: String,
    matchers: Vec<LabelMatcher>,
}

// Compiled regexes cannot be compared, and the same text always parses to the same selector.
impl PartialEq for MetricSelector {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for MetricSelector {}

impl fmt::Debug for MetricSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetricSelector").field(&self.text).finish()
    }
}

impl fmt::Display for MetricSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone)]
struct LabelMatcher {
    label: String,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Equal(String),
    NotEqual(String),
    Matches(Regex),
    NotMatches(Regex),
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

    /// Whether a series with these labels (name, unescaped value) passes every label matcher.
    pub(crate) fn matches_labels(&self, labels: &[(&str, String)]) -> bool {
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
            text: text.to_owned(),
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
    let regex = |pattern: String| {
        anchored(&pattern).map_err(|e| SelectorError::InvalidRegex {
            label: label.clone(),
            pattern,
            reason: e.to_string(),
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

/// Compiles a matcher's regex as Prometheus does: fully anchored, with `.` matching newlines. The
/// pattern must compile on its own first, or `a)|(b` would be accepted through the wrapping group.
fn anchored(pattern: &str) -> Result<Regex, regex_lite::Error> {
    Regex::new(pattern)?;
    Regex::new(&format!("^(?s:{pattern})$"))
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

/// Parsed while the config is read, so that an error names the key of the selector.
impl<'de> serde::Deserialize<'de> for MetricSelector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::parse_with(
            d,
            "a Prometheus metric selector such as http_requests_total{code=~\"5..\"}",
            |text| {
                text.parse()
                    .map_err(|e| format!("invalid metric selector {text:?}: {e}"))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(text: &str) -> MetricSelector {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    /// Whether `selector` passes a series with these labels.
    fn passes(selector: &str, labels: &[(&str, &str)]) -> bool {
        let labels: Vec<(&str, String)> = labels
            .iter()
            .map(|&(name, value)| (name, value.to_owned()))
            .collect();
        self::selector(selector).matches_labels(&labels)
    }

    fn code(selector: &str, value: &str) -> bool {
        passes(selector, &[("code", value)])
    }

    #[test]
    fn selector_accepts_all_operators() {
        let s = selector(r#"x{a="1",b!="2"}"#);
        assert_eq!(s.name(), "x");
        assert!(passes(r#"x{a="1",b!="2"}"#, &[("a", "1"), ("b", "3")]));
        assert!(!passes(r#"x{a="1",b!="2"}"#, &[("a", "1"), ("b", "2")]));
        let spaced = r#" x { a =~ "1|2" , b !~ "2" } "#;
        assert!(passes(spaced, &[("a", "2"), ("b", "3")]));
        assert!(!passes(spaced, &[("a", "3")]));
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
    fn regex_matchers_are_fully_anchored() {
        assert!(code(r#"x{code=~"5.."}"#, "500"));
        assert!(!code(r#"x{code=~"5.."}"#, "200"));
        assert!(!code(r#"x{code=~"5.."}"#, "5000"));
        assert!(!code(r#"x{code=~"50"}"#, "500"));
        assert!(!code(r#"x{code=~"500|503"}"#, "5030"));
        assert!(code(r#"x{code=~"(4|5).."}"#, "404"));
        assert!(code(r#"x{code=~"(4|5).."}"#, "503"));
        assert!(!code(r#"x{code=~"(4|5).."}"#, "200"));
        assert!(!code(r#"x{code!~"(4|5).."}"#, "404"));
        assert!(code(r#"x{code!~"(4|5).."}"#, "200"));
        assert!(code(r#"x{code!~"5.."}"#, "5000"));
    }

    #[test]
    fn regex_matchers_take_prometheus_syntax() {
        for (pattern, matching, other) in [
            ("5.*", "5", "45"),
            ("5+", "555", "5a"),
            ("(500|503)", "503", "502"),
            ("5.?", "5", "500"),
            ("5{2}", "55", "555"),
            (r"\d+", "404", "4o4"),
            ("[^2]00", "500", "200"),
            ("^5[0-9][0-3]$", "503", "504"),
            (r"5\.0", "5.0", "510"),
            ("(?i)ok", "OK", "no"),
            ("a.b", "a\nb", "ab"),
        ] {
            let text = format!(r#"x{{code=~"{pattern}"}}"#);
            assert!(code(&text, matching), "{pattern} should match {matching:?}");
            assert!(!code(&text, other), "{pattern} should not match {other:?}");
        }
        // Valid, if useless: nothing can come before the start.
        assert!(!code(r#"x{code=~"a^b"}"#, "ab"));
        assert!(!code(r#"x{code=~"a$b"}"#, "ab"));
    }

    #[test]
    fn a_missing_label_matches_as_empty() {
        assert!(passes(r#"x{path=""}"#, &[("code", "200")]));
        assert!(!passes(r#"x{path!=""}"#, &[("code", "200")]));
        assert!(passes(r#"x{path=~"|/a"}"#, &[]));
        assert!(!passes(r#"x{path=~".+"}"#, &[]));
        assert!(passes(r#"x{path!~".+"}"#, &[]));
    }

    #[test]
    fn invalid_regex_is_refused_naming_label_and_pattern() {
        for pattern in ["[45", "[9-0]", "(", "a)|(b"] {
            let text = format!(r#"x{{a="1",code=~"{pattern}"}}"#);
            let err = text.parse::<MetricSelector>().unwrap_err();
            let SelectorError::InvalidRegex {
                label,
                pattern: written,
                reason,
            } = &err
            else {
                panic!("{pattern}: {err:?}");
            };
            assert_eq!((label.as_str(), written.as_str()), ("code", pattern));
            assert!(!reason.is_empty());
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("invalid regex {pattern:?} for label \"code\": ")),
                "{message}"
            );
        }
        let err = r#"x{code!~"[45"}"#.parse::<MetricSelector>().unwrap_err();
        assert!(matches!(err, SelectorError::InvalidRegex { .. }), "{err:?}");
    }

    #[test]
    fn selectors_compare_and_print_as_written() {
        let s = selector(r#" x{code=~"5.."} "#);
        assert_eq!(s, selector(r#"x{code=~"5.."}"#));
        assert_ne!(s, selector(r#"x{code=~"4.."}"#));
        assert_eq!(s.to_string(), r#"x{code=~"5.."}"#);
        assert_eq!(format!("{s:?}"), r#"MetricSelector("x{code=~\"5..\"}")"#);
    }
}
