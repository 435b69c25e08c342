//! Sums of matching series in the Prometheus text exposition format.

use crate::config::{Cursor, MetricSelector};

/// Sums the values of every series in Prometheus text exposition `text`
/// whose name and labels match `selector`.
///
/// Comment lines, malformed lines and non-finite values (`NaN`, `±Inf`) are
/// skipped; timestamps after the value are ignored. Returns `None` when no
/// series with a finite value matches.
#[must_use]
pub fn sum_matching(text: &str, selector: &MetricSelector) -> Option<f64> {
    let mut sum: Option<f64> = None;
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(value) = matching_sample_value(line, selector) {
            sum = Some(sum.unwrap_or(0.0) + value);
        }
    }
    sum
}

/// The value of one sample line if it matches `selector` and is finite.
fn matching_sample_value(line: &str, selector: &MetricSelector) -> Option<f64> {
    let mut cursor = Cursor::new(line);
    let name = cursor.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    // Comparing the name first avoids unescaping labels of unrelated series.
    if name != selector.name() {
        return None;
    }
    let mut labels: Vec<(&str, String)> = Vec::new();
    if cursor.eat('{') {
        loop {
            cursor.skip_spaces();
            if cursor.eat('}') {
                break;
            }
            let label = cursor.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
            if label.is_empty() {
                return None;
            }
            cursor.skip_spaces();
            if !cursor.eat('=') {
                return None;
            }
            cursor.skip_spaces();
            if !cursor.eat('"') {
                return None;
            }
            labels.push((label, cursor.quoted()?));
            cursor.skip_spaces();
            if cursor.eat('}') {
                break;
            }
            if !cursor.eat(',') {
                return None;
            }
        }
    }
    if !cursor.peek().is_some_and(char::is_whitespace) {
        return None;
    }
    // Only the first field is the value; a timestamp or an OpenMetrics
    // exemplar may follow it.
    let value = cursor
        .rest()
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()?;
    if !value.is_finite() || !selector.matches_labels(&labels) {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::test_support::{assert_close, selector};

    const EXPOSITION: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
http_requests_total{method="get",code="500",path="/a,b"} 7
http_requests_total{method="get",code="503",msg="say \"hi\", code=\"200\""} 5
	http_requests_total{ method = "get" , code="404", } 11
http_requests_total{code="502",path="C:\\dir"} NaN
http_requests_total{code="504"} +Inf
http_requests_total_created{method="post",code="200"} 1.7e9
http_requests_other{code="500"} 1000
# HELP process_cpu_seconds_total Total user and system CPU time.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5 1700000000000
up{} 1
broken_total{code="500" 4
"#;

    fn sum(text: &str) -> Option<f64> {
        sum_matching(EXPOSITION, &selector(text))
    }

    #[test]
    fn prometheus_sums_all_series_of_a_name() {
        assert_close(sum("http_requests_total"), 1027.0 + 3.0 + 7.0 + 5.0 + 11.0);
        assert_close(sum("process_cpu_seconds_total"), 12.5);
        assert_close(sum("up"), 1.0);
        assert_close(sum("http_requests_other"), 1000.0);
    }

    #[test]
    fn prometheus_equality_and_inequality() {
        assert_close(sum(r#"http_requests_total{code="500"}"#), 7.0);
        assert_close(sum(r#"http_requests_total{code!="200"}"#), 26.0);
        assert_close(
            sum(r#"http_requests_total{method="get",code!="404"}"#),
            12.0,
        );
        assert_close(sum(r#"http_requests_total{path="/a,b"}"#), 7.0);
        assert_close(
            sum(r#"http_requests_total{msg="say \"hi\", code=\"200\""}"#),
            5.0,
        );
    }

    #[test]
    fn prometheus_regex_matchers() {
        assert_close(sum(r#"http_requests_total{code=~"5.."}"#), 12.0);
        assert_close(sum(r#"http_requests_total{code=~"[45].."}"#), 26.0);
        assert_close(sum(r#"http_requests_total{code=~"500|503"}"#), 12.0);
        assert_close(sum(r#"http_requests_total{code=~"^5[0-9][0-3]$"}"#), 12.0);
        assert_close(sum(r#"http_requests_total{code!~"2.."}"#), 26.0);
        assert_close(sum(r#"http_requests_total{code=~"[^2]00"}"#), 10.0);
        // Anchored: "50" must not match "500".
        assert_eq!(sum(r#"http_requests_total{code=~"50"}"#), None);
    }

    #[test]
    fn prometheus_missing_label_matches_empty_string() {
        assert_close(
            sum(r#"http_requests_total{path=""}"#),
            1027.0 + 3.0 + 5.0 + 11.0,
        );
        assert_close(sum(r#"http_requests_total{path!=""}"#), 7.0);
    }

    #[test]
    fn prometheus_escaped_backslash_in_label_value() {
        let text = "x{path=\"C:\\\\dir\"} 4\nx{path=\"C:dir\"} 1\n";
        assert_close(sum_matching(text, &selector(r#"x{path="C:\\dir"}"#)), 4.0);
    }

    #[test]
    fn prometheus_no_match_or_only_non_finite_gives_none() {
        assert_eq!(sum("http_requests"), None, "names are not prefixes");
        assert_eq!(sum(r#"http_requests_total{code="502"}"#), None);
        assert_eq!(sum(r#"http_requests_total{code="504"}"#), None);
        assert_eq!(sum("broken_total"), None, "malformed lines are skipped");
        assert_eq!(sum_matching("", &selector("up")), None);
    }
}
