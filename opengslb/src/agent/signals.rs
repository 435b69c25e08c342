//! Local load signals for the agent: CPU and memory use as the container sees
//! them, an error rate from Prometheus counters or failed health checks, and
//! thresholds that decide when to drain this backend from DNS.
//!
//! Everything that reads the filesystem takes a root directory so tests can
//! point it at a fake tree; production passes `/`.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Most health-check results a [`CheckWindow`] keeps; the oldest go first.
pub const MAX_CHECKS: usize = 10_000;

// ---------------------------------------------------------------------------
// Filesystem helpers
// ---------------------------------------------------------------------------

fn read_string(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Value of `key` in files made of `key value` lines (`cpu.stat`, `memory.stat`).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? == key {
            fields.next()?.parse().ok()
        } else {
            None
        }
    })
}

/// Components of this process's cgroup v2 path, or `None` without cgroup v2.
fn cgroup_v2_components(root: &Path) -> Option<Vec<String>> {
    let text = read_string(&root.join("proc/self/cgroup"))?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let mut components = Vec::new();
    for component in path.trim().split('/') {
        match component {
            "" | "." => {}
            // A process moved outside its cgroup namespace sees a path relative
            // to the namespace root, which does not exist under our mount.
            ".." => return None,
            other => components.push(other.to_owned()),
        }
    }
    Some(components)
}

/// Cgroup directories from the process's own cgroup up to the mount root.
///
/// The mount root is included because inside a cgroup namespace (the usual
/// container setup) the container's own limits live there and the process
/// path is just `/`.
fn cgroup_chain(root: &Path, components: &[String]) -> Vec<PathBuf> {
    let base = root.join("sys/fs/cgroup");
    (0..=components.len())
        .rev()
        .map(|depth| {
            components
                .iter()
                .take(depth)
                .fold(base.clone(), |dir, component| dir.join(component))
        })
        .collect()
}

/// Allowed CPUs from a `cpu.max` body; `None` when unlimited or unreadable.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    if quota == "max" {
        return None;
    }
    let quota = quota.parse::<u64>().ok()?;
    // The kernel accepts a bare quota on write and keeps the default period.
    let period = match fields.next() {
        Some(period) => period.parse::<u64>().ok()?,
        None => 100_000,
    };
    if period == 0 {
        return None;
    }
    Some(quota as f64 / period as f64)
}

/// Limit in bytes from a `memory.max` body; `None` when unlimited or unusable.
fn parse_memory_max(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    // A zero limit would make every percentage infinite; it is never a real
    // configuration for a process that is running, so it is ignored.
    text.parse::<u64>().ok().filter(|&limit| limit > 0)
}

/// Keeps a ratio inside `0..=100`, rejecting NaN and infinities.
fn clamp_percent(value: f64) -> Option<f64> {
    value.is_finite().then(|| value.clamp(0.0, 100.0))
}

// ---------------------------------------------------------------------------
// CPU
// ---------------------------------------------------------------------------

/// Samples CPU use as a percentage of the CPU this process's cgroup may use.
///
/// Uses cgroup v2 (`cpu.stat` against the tightest `cpu.max` of the cgroup
/// and its ancestors) and falls back to host-wide use from `/proc/stat` when
/// cgroup v2 is not available.
#[derive(Debug, Clone)]
pub struct CpuSampler {
    root: PathBuf,
    host_cpus: f64,
    baseline: Option<CpuBaseline>,
}

#[derive(Debug, Clone, Copy)]
enum CpuBaseline {
    Cgroup { usage_usec: u64, at: Instant },
    Host { busy: u64, total: u64 },
}

enum CpuReading {
    Cgroup {
        usage_usec: u64,
        allowed_cpus: Option<f64>,
    },
    Host {
        busy: u64,
        total: u64,
    },
}

impl CpuSampler {
    /// Creates a sampler reading files below `root` (`/` in production).
    ///
    /// `host_cpus` is the number of online CPUs; it applies when no cgroup
    /// limit is set and caps quotas larger than the machine.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>, host_cpus: f64) -> Self {
        Self {
            root: root.into(),
            host_cpus,
            baseline: None,
        }
    }

    /// Percent (`0..=100`) of the allowed CPU used since the previous sample.
    ///
    /// Returns `None` on the first sample, when the files cannot be read, when
    /// a counter went backwards or the source switched between cgroup and
    /// host (both restart the baseline), and when no time has passed.
    pub fn sample(&mut self, now: Instant) -> Option<f64> {
        match self.read()? {
            CpuReading::Cgroup {
                usage_usec,
                allowed_cpus,
            } => {
                let previous = self.baseline.replace(CpuBaseline::Cgroup {
                    usage_usec,
                    at: now,
                });
                let Some(CpuBaseline::Cgroup {
                    usage_usec: previous_usage,
                    at: previous_at,
                }) = previous
                else {
                    return None;
                };
                let used_usec = usage_usec.checked_sub(previous_usage)?;
                let elapsed_usec = now.checked_duration_since(previous_at)?.as_secs_f64() * 1e6;
                let capacity_usec = elapsed_usec * allowed_cpus?;
                if capacity_usec <= 0.0 {
                    return None;
                }
                clamp_percent(used_usec as f64 / capacity_usec * 100.0)
            }
            CpuReading::Host { busy, total } => {
                let previous = self.baseline.replace(CpuBaseline::Host { busy, total });
                let Some(CpuBaseline::Host {
                    busy: previous_busy,
                    total: previous_total,
                }) = previous
                else {
                    return None;
                };
                let busy_delta = busy.checked_sub(previous_busy)?;
                let total_delta = total.checked_sub(previous_total)?;
                if total_delta == 0 {
                    return None;
                }
                clamp_percent(busy_delta as f64 / total_delta as f64 * 100.0)
            }
        }
    }

    fn read(&self) -> Option<CpuReading> {
        if let Some(reading) = self.read_cgroup() {
            return Some(reading);
        }
        let (busy, total) = read_proc_stat(&self.root)?;
        Some(CpuReading::Host { busy, total })
    }

    fn read_cgroup(&self) -> Option<CpuReading> {
        let components = cgroup_v2_components(&self.root)?;
        let chain = cgroup_chain(&self.root, &components);
        let leaf = chain.first()?;
        let usage_usec = keyed_value(&read_string(&leaf.join("cpu.stat"))?, "usage_usec")?;
        // Limits are re-read on every sample because they can be resized live.
        let limit = chain
            .iter()
            .filter_map(|dir| parse_cpu_max(&read_string(&dir.join("cpu.max"))?))
            .reduce(f64::min);
        let host = (self.host_cpus.is_finite() && self.host_cpus > 0.0).then_some(self.host_cpus);
        // A quota above the machine's size cannot be used in full.
        let allowed_cpus = match (limit, host) {
            (Some(limit), Some(host)) => Some(limit.min(host)),
            (Some(limit), None) => Some(limit),
            (None, host) => host,
        };
        Some(CpuReading::Cgroup {
            usage_usec,
            allowed_cpus,
        })
    }
}

/// Busy and total jiffies from the aggregate line of `/proc/stat`.
fn read_proc_stat(root: &Path) -> Option<(u64, u64)> {
    let text = read_string(&root.join("proc/stat"))?;
    let mut fields = text.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // Only user..steal: guest and guest_nice are already counted in user and
    // nice, so adding them would count guest time twice.
    let values = fields
        .take(8)
        .map(|field| field.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    let idle = values.get(3)?;
    let iowait = values.get(4).copied().unwrap_or(0);
    let total = values.iter().try_fold(0u64, |sum, &v| sum.checked_add(v))?;
    let busy = total.saturating_sub(idle.saturating_add(iowait));
    Some((busy, total))
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// Memory use in percent (`0..=100`) of what this process's cgroup may use.
///
/// The working set is cgroup v2 `memory.current` minus `inactive_file` (as
/// docker and the kubelet compute it, since inactive page cache is reclaimed
/// before an OOM kill), against the tightest `memory.max` of the cgroup and
/// its ancestors, capped at the host's `MemTotal`. Without any limit the
/// host-wide use from `/proc/meminfo` (`MemTotal` against `MemAvailable`) is
/// returned. `None` when the needed files cannot be read.
pub fn memory_percent(root: impl AsRef<Path>) -> Option<f64> {
    let root = root.as_ref();
    let host = read_meminfo(root);
    if let Some(components) = cgroup_v2_components(root) {
        let chain = cgroup_chain(root, &components);
        let limit = chain
            .iter()
            .filter_map(|dir| parse_memory_max(&read_string(&dir.join("memory.max"))?))
            .min();
        if let Some(limit) = limit {
            let leaf = chain.first()?;
            let current = read_string(&leaf.join("memory.current"))?
                .trim()
                .parse::<u64>()
                .ok()?;
            let inactive_file = read_string(&leaf.join("memory.stat"))
                .and_then(|stat| keyed_value(&stat, "inactive_file"))
                .unwrap_or(0);
            let working_set = current.saturating_sub(inactive_file);
            // A limit above the machine's memory is never the one that bites.
            let limit = host.map_or(limit, |(total, _)| limit.min(total));
            return percent_of(working_set, limit);
        }
    }
    let (total, available) = host?;
    percent_of(total.saturating_sub(available), total)
}

fn percent_of(part: u64, whole: u64) -> Option<f64> {
    if whole == 0 {
        return None;
    }
    clamp_percent(part as f64 / whole as f64 * 100.0)
}

/// `MemTotal` and `MemAvailable` in bytes.
fn read_meminfo(root: &Path) -> Option<(u64, u64)> {
    let text = read_string(&root.join("proc/meminfo"))?;
    let field = |key: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            let kib = rest.split_whitespace().next()?.parse::<u64>().ok()?;
            kib.checked_mul(1024)
        })
    };
    let total = field("MemTotal")?;
    if total == 0 {
        return None;
    }
    Some((total, field("MemAvailable")?))
}

// ---------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------

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

    fn matches_labels(&self, labels: &[(&str, String)]) -> bool {
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

/// An anchored regex made only of single-character atoms and top-level `|`,
/// which is enough to match status codes and similar label values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimpleRegex {
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
    fn parse(pattern: &str) -> Result<Self, String> {
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

    fn is_match(&self, text: &str) -> bool {
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

/// Minimal scanner shared by the selector and exposition parsers.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.pos += expected.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, expected: &str) -> bool {
        if self.rest().starts_with(expected) {
            self.pos += expected.len();
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// Reads up to the closing quote (the opening one is already consumed),
    /// undoing `\\`, `\"` and `\n`; `None` if the quote is never closed.
    fn quoted(&mut self) -> Option<String> {
        let mut value = String::new();
        loop {
            match self.bump()? {
                '"' => return Some(value),
                '\\' => match self.bump()? {
                    'n' => value.push('\n'),
                    c @ ('"' | '\\') => value.push(c),
                    // Unknown escapes are kept so that regex escapes such as
                    // `\.` survive in selectors written with single backslashes.
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                c => value.push(c),
            }
        }
    }
}

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
    if name != selector.name {
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

/// Error rate between two scrapes of monotonically increasing counters.
#[derive(Debug, Clone, Default)]
pub struct ErrorRateFromCounters {
    previous: Option<(f64, f64)>,
}

impl ErrorRateFromCounters {
    /// Creates a tracker with no baseline yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the current `total` and `failed` counter values and returns the
    /// percentage of failed requests since the previous call.
    ///
    /// `None` on the first call and after a counter reset (either counter went
    /// down, e.g. the app restarted), both of which restart the baseline.
    /// Negative or non-finite inputs are rejected without touching the
    /// baseline. No requests in the interval gives `Some(0.0)`.
    pub fn update(&mut self, total: f64, failed: f64) -> Option<f64> {
        if !(total.is_finite() && failed.is_finite() && total >= 0.0 && failed >= 0.0) {
            return None;
        }
        let (previous_total, previous_failed) = self.previous.replace((total, failed))?;
        if total < previous_total || failed < previous_failed {
            return None;
        }
        let requests = total - previous_total;
        if requests <= 0.0 {
            return Some(0.0);
        }
        // Failures and totals come from different series and may be scraped a
        // moment apart, so the ratio can exceed 1 slightly.
        clamp_percent((failed - previous_failed) / requests * 100.0)
    }

    /// Sums `total` and `failed` from one scrape and feeds them to
    /// [`update`](Self::update).
    ///
    /// A missing failed series counts as zero, because client libraries only
    /// create a labelled series (such as `code="500"`) on its first
    /// increment. A missing total gives `None` and leaves the baseline alone.
    pub fn update_from_text(
        &mut self,
        text: &str,
        total: &MetricSelector,
        failed: &MetricSelector,
    ) -> Option<f64> {
        let total = sum_matching(text, total)?;
        let failed = sum_matching(text, failed).unwrap_or(0.0);
        self.update(total, failed)
    }
}

// ---------------------------------------------------------------------------
// Health-check window
// ---------------------------------------------------------------------------

/// Failed-check percentage over a sliding time window, used as the error rate
/// when no Prometheus source is configured.
#[derive(Debug, Clone)]
pub struct CheckWindow {
    window: Duration,
    entries: VecDeque<(Instant, bool)>,
}

impl CheckWindow {
    /// Creates an empty window covering the last `window` of checks.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: VecDeque::new(),
        }
    }

    /// Records one check result, pruning results older than the window and
    /// keeping at most [`MAX_CHECKS`] entries.
    pub fn record(&mut self, now: Instant, ok: bool) {
        while let Some(&(at, _)) = self.entries.front() {
            if now.saturating_duration_since(at) > self.window {
                self.entries.pop_front();
            } else {
                break;
            }
        }
        if self.entries.len() >= MAX_CHECKS {
            self.entries.pop_front();
        }
        self.entries.push_back((now, ok));
    }

    /// Percent of failed checks among those no older than the window at
    /// `now`; `None` when there are none.
    #[must_use]
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let (checks, failed) = self
            .entries
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= self.window)
            .fold((0usize, 0usize), |(checks, failed), (_, ok)| {
                (checks + 1, failed + usize::from(!ok))
            });
        (checks > 0).then(|| failed as f64 / checks as f64 * 100.0)
    }

    /// Number of stored results, including ones not yet pruned.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no results are stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Thresholds and verdict
// ---------------------------------------------------------------------------

/// A threshold with hysteresis and a minimum hold time, so that a signal
/// hovering around its threshold does not flap the backend in and out of DNS.
#[derive(Debug, Clone)]
pub struct Trigger {
    threshold: f64,
    hysteresis: f64,
    min_hold: Duration,
    firing_since: Option<Instant>,
}

impl Trigger {
    /// Fires at `value >= threshold`; clears once `value < threshold -
    /// hysteresis` after firing for at least `min_hold`. A negative or
    /// non-finite hysteresis is treated as zero.
    #[must_use]
    pub fn new(threshold: f64, hysteresis: f64, min_hold: Duration) -> Self {
        Self {
            threshold,
            hysteresis: if hysteresis.is_finite() {
                hysteresis.max(0.0)
            } else {
                0.0
            },
            min_hold,
            firing_since: None,
        }
    }

    /// Feeds the latest value and returns whether the trigger is firing.
    /// `None` or a non-finite value keeps the current state.
    pub fn update(&mut self, now: Instant, value: Option<f64>) -> bool {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return self.firing();
        };
        match self.firing_since {
            None if value >= self.threshold => self.firing_since = Some(now),
            Some(since)
                if value < self.threshold - self.hysteresis
                    && now.saturating_duration_since(since) >= self.min_hold =>
            {
                self.firing_since = None;
            }
            _ => {}
        }
        self.firing()
    }

    /// Whether the trigger is firing.
    #[must_use]
    pub fn firing(&self) -> bool {
        self.firing_since.is_some()
    }

    /// The value at or above which the trigger fires.
    #[must_use]
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

/// Latest raw signal values, `None` where a signal is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// CPU use in percent of the allowed CPU.
    pub cpu_percent: Option<f64>,
    /// Memory working set in percent of the limit.
    pub memory_percent: Option<f64>,
    /// Failed requests or checks in percent.
    pub error_rate_percent: Option<f64>,
}

/// Whether to drain this backend, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// True when at least one trigger is firing.
    pub draining: bool,
    /// One entry per firing trigger, joined by `", "`; empty when not draining.
    pub reason: String,
}

/// Combines `(name, trigger, latest value)` items into a [`Verdict`].
///
/// A firing trigger reads `cpu 97% >= 90%`. One still held by hysteresis or
/// its hold time reads `cpu 85% (held, threshold 90%)`, and one without a
/// current value `cpu n/a (held, threshold 90%)`, so the text never claims a
/// comparison that is false.
#[must_use]
pub fn verdict(items: &[(&str, &Trigger, Option<f64>)]) -> Verdict {
    let reasons: Vec<String> = items
        .iter()
        .filter(|(_, trigger, _)| trigger.firing())
        .map(|(name, trigger, value)| {
            let threshold = format_number(trigger.threshold());
            match value {
                Some(v) if *v >= trigger.threshold() => {
                    format!("{name} {}% >= {threshold}%", format_number(*v))
                }
                Some(v) => format!(
                    "{name} {}% (held, threshold {threshold}%)",
                    format_number(*v)
                ),
                None => format!("{name} n/a (held, threshold {threshold}%)"),
            }
        })
        .collect();
    Verdict {
        draining: !reasons.is_empty(),
        reason: reasons.join(", "),
    }
}

/// No decimals when the value rounds to an integer at one decimal, else one.
fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = (value * 10.0).round() / 10.0;
    // Avoid printing "-0" for tiny negative values.
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A throwaway directory standing in for `/`, removed on drop.
    struct FakeRoot {
        path: PathBuf,
    }

    impl FakeRoot {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "opengslb-signals-{}-{tag}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self { path }
        }

        fn write(&self, relative: &str, contents: &str) {
            let path = self.path.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }

        fn remove(&self, relative: &str) {
            fs::remove_file(self.path.join(relative)).unwrap();
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }

    fn assert_close(actual: Option<f64>, expected: f64) {
        let actual = actual.unwrap_or_else(|| panic!("expected Some({expected}), got None"));
        assert!(
            (actual - expected).abs() < 1e-9,
            "expected {expected}, got {actual}"
        );
    }

    fn selector(text: &str) -> MetricSelector {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const POD: &str = "sys/fs/cgroup/kubepods/pod1";
    const CTR: &str = "sys/fs/cgroup/kubepods/pod1/ctr";

    fn pod_tree(tag: &str) -> FakeRoot {
        let root = FakeRoot::new(tag);
        root.write(
            "proc/self/cgroup",
            "12:memory:/legacy\n0::/kubepods/pod1/ctr\n",
        );
        root
    }

    fn cpu_stat(root: &FakeRoot, usage_usec: u64) {
        root.write(
            &format!("{CTR}/cpu.stat"),
            &format!("usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\n"),
        );
    }

    /// Two samples one second apart with `used_usec` of CPU in between.
    fn cpu_after_one_second(root: &FakeRoot, host_cpus: f64, used_usec: u64) -> Option<f64> {
        let mut sampler = CpuSampler::new(&root.path, host_cpus);
        let t0 = Instant::now();
        cpu_stat(root, 5_000_000);
        assert_eq!(sampler.sample(t0), None, "first sample has no baseline");
        cpu_stat(root, 5_000_000 + used_usec);
        sampler.sample(t0 + secs(1))
    }

    // ---- CPU ----

    #[test]
    fn cpu_parent_limit_tighter_than_child() {
        let root = pod_tree("cpu-parent");
        root.write(&format!("{CTR}/cpu.max"), "max 100000\n");
        root.write(&format!("{POD}/cpu.max"), "50000 100000\n");
        // 0.25 CPU-seconds in 1 s against 0.5 allowed CPUs.
        assert_close(cpu_after_one_second(&root, 4.0, 250_000), 50.0);
    }

    #[test]
    fn cpu_child_limit_tighter_than_parent() {
        let root = pod_tree("cpu-child");
        root.write(&format!("{CTR}/cpu.max"), "10000 50000\n");
        root.write(&format!("{POD}/cpu.max"), "100000 100000\n");
        assert_close(cpu_after_one_second(&root, 4.0, 100_000), 50.0);
    }

    #[test]
    fn cpu_limit_at_mount_root_applies_inside_cgroup_namespace() {
        let root = FakeRoot::new("cpu-ns");
        root.write("proc/self/cgroup", "0::/\n");
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 1000\n");
        root.write("sys/fs/cgroup/cpu.max", "200000 100000\n");
        let mut sampler = CpuSampler::new(&root.path, 8.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 1001000\n");
        assert_close(sampler.sample(t0 + secs(2)), 25.0);
    }

    #[test]
    fn cpu_without_limit_uses_host_cpus() {
        let root = pod_tree("cpu-max");
        root.write(&format!("{CTR}/cpu.max"), "max 100000\n");
        root.write(&format!("{POD}/cpu.max"), "max 100000\n");
        assert_close(cpu_after_one_second(&root, 4.0, 1_000_000), 25.0);
    }

    #[test]
    fn cpu_quota_above_host_is_capped_by_host() {
        let root = pod_tree("cpu-big");
        root.write(&format!("{CTR}/cpu.max"), "800000 100000\n");
        assert_close(cpu_after_one_second(&root, 2.0, 1_000_000), 50.0);
    }

    #[test]
    fn cpu_is_clamped_to_100() {
        let root = pod_tree("cpu-clamp");
        root.write(&format!("{CTR}/cpu.max"), "10000 100000\n");
        assert_close(cpu_after_one_second(&root, 4.0, 900_000), 100.0);
    }

    #[test]
    fn cpu_counter_going_backwards_restarts_baseline() {
        let root = pod_tree("cpu-reset");
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        cpu_stat(&root, 5_000_000);
        assert_eq!(sampler.sample(t0), None);
        cpu_stat(&root, 1_000_000);
        assert_eq!(sampler.sample(t0 + secs(1)), None);
        cpu_stat(&root, 1_500_000);
        assert_close(sampler.sample(t0 + secs(2)), 50.0);
    }

    #[test]
    fn cpu_missing_files_give_none() {
        let root = FakeRoot::new("cpu-missing");
        let mut sampler = CpuSampler::new(&root.path, 4.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        assert_eq!(sampler.sample(t0 + secs(1)), None);

        // cgroup v2 path known but no cpu.stat and no /proc/stat either.
        let root = pod_tree("cpu-missing-stat");
        let mut sampler = CpuSampler::new(&root.path, 4.0);
        assert_eq!(sampler.sample(t0), None);
        assert_eq!(sampler.sample(t0 + secs(1)), None);
    }

    #[test]
    fn cpu_falls_back_to_proc_stat_without_cgroup_v2() {
        let root = FakeRoot::new("cpu-host");
        root.write("proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n");
        // user nice system idle iowait irq softirq steal guest guest_nice
        root.write(
            "proc/stat",
            "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 100 0 100 700 100 0 0 0 0 0\n",
        );
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        // +200 busy (user/system), +600 idle, +200 iowait; guest grows by 500
        // but is already part of user, so it must not count again.
        root.write("proc/stat", "cpu  200 0 200 1300 300 0 0 0 500 0\n");
        assert_close(sampler.sample(t0 + secs(1)), 20.0);
    }

    #[test]
    fn cpu_falls_back_when_cgroup_v2_lacks_cpu_stat() {
        let root = pod_tree("cpu-host2");
        root.write("proc/stat", "cpu  0 0 0 100 0 0 0 0\n");
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        root.write("proc/stat", "cpu  30 0 20 150 0 0 0 0\n");
        assert_close(sampler.sample(t0 + secs(1)), 50.0);
    }

    #[test]
    fn cpu_unresolvable_namespace_path_uses_host() {
        let root = FakeRoot::new("cpu-dotdot");
        root.write("proc/self/cgroup", "0::/../../other\n");
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 0\n");
        root.write("sys/fs/cgroup/other/cpu.stat", "usage_usec 0\n");
        root.write("proc/stat", "cpu  0 0 0 100 0 0 0 0\n");
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 1000000\n");
        root.write("sys/fs/cgroup/other/cpu.stat", "usage_usec 1000000\n");
        root.write("proc/stat", "cpu  10 0 0 190 0 0 0 0\n");
        assert_close(sampler.sample(t0 + secs(1)), 10.0);
    }

    // ---- memory ----

    #[test]
    fn memory_subtracts_inactive_file_and_uses_parent_limit() {
        let root = pod_tree("mem-parent");
        root.write(&format!("{CTR}/memory.current"), "629145600\n");
        root.write(
            &format!("{CTR}/memory.stat"),
            "anon 400000000\nactive_file 1\ninactive_file 104857600\n",
        );
        root.write(&format!("{CTR}/memory.max"), "max\n");
        root.write(&format!("{POD}/memory.max"), "1073741824\n");
        // (600 MiB - 100 MiB) / 1 GiB
        assert_close(memory_percent(&root.path), 500.0 / 1024.0 * 100.0);
    }

    #[test]
    fn memory_child_limit_tighter_than_parent() {
        let root = pod_tree("mem-child");
        root.write(&format!("{CTR}/memory.current"), "300\n");
        root.write(&format!("{CTR}/memory.max"), "400\n");
        root.write(&format!("{POD}/memory.max"), "1000\n");
        assert_close(memory_percent(&root.path), 75.0);
    }

    #[test]
    fn memory_limit_capped_by_host_total() {
        let root = pod_tree("mem-host-cap");
        root.write(&format!("{CTR}/memory.current"), "512000\n");
        root.write(&format!("{CTR}/memory.max"), "999999999999\n");
        root.write("proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 900 kB\n");
        assert_close(memory_percent(&root.path), 50.0);
    }

    #[test]
    fn memory_inactive_file_above_current_gives_zero() {
        let root = pod_tree("mem-zero");
        root.write(&format!("{CTR}/memory.current"), "100\n");
        root.write(&format!("{CTR}/memory.stat"), "inactive_file 500\n");
        root.write(&format!("{CTR}/memory.max"), "1000\n");
        assert_close(memory_percent(&root.path), 0.0);
    }

    #[test]
    fn memory_without_limit_uses_meminfo() {
        let root = pod_tree("mem-meminfo");
        root.write(&format!("{CTR}/memory.current"), "100\n");
        root.write(&format!("{CTR}/memory.max"), "max\n");
        root.write(&format!("{POD}/memory.max"), "max\n");
        root.write(
            "proc/meminfo",
            "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    4000 kB\n",
        );
        assert_close(memory_percent(&root.path), 75.0);
    }

    #[test]
    fn memory_without_cgroup_v2_uses_meminfo() {
        let root = FakeRoot::new("mem-v1");
        root.write("proc/self/cgroup", "9:memory:/docker/abc\n");
        root.write("proc/meminfo", "MemTotal: 2000 kB\nMemAvailable: 1500 kB\n");
        assert_close(memory_percent(&root.path), 25.0);
    }

    #[test]
    fn memory_missing_files_give_none() {
        let root = pod_tree("mem-missing");
        root.write(&format!("{POD}/memory.max"), "1000\n");
        root.write("proc/meminfo", "MemTotal: 2000 kB\nMemAvailable: 1500 kB\n");
        // A limit exists but memory.current does not: host use would mislead.
        assert_eq!(memory_percent(&root.path), None);

        let empty = FakeRoot::new("mem-empty");
        assert_eq!(memory_percent(&empty.path), None);

        root.remove("proc/meminfo");
        root.remove(&format!("{POD}/memory.max"));
        assert_eq!(memory_percent(&root.path), None);
    }

    // ---- Prometheus ----

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

    // ---- error rate from counters ----

    #[test]
    fn counters_give_interval_rate() {
        let mut rate = ErrorRateFromCounters::new();
        assert_eq!(rate.update(100.0, 0.0), None);
        assert_close(rate.update(200.0, 10.0), 10.0);
        assert_close(rate.update(200.0, 10.0), 0.0);
        assert_close(rate.update(300.0, 60.0), 50.0);
    }

    #[test]
    fn counter_reset_restarts_baseline() {
        let mut rate = ErrorRateFromCounters::new();
        assert_eq!(rate.update(1000.0, 100.0), None);
        assert_eq!(rate.update(50.0, 1.0), None, "total went down");
        assert_close(rate.update(150.0, 6.0), 5.0);
        assert_eq!(rate.update(160.0, 0.0), None, "failed went down");
        assert_close(rate.update(170.0, 1.0), 10.0);
    }

    #[test]
    fn counters_reject_invalid_values_without_losing_baseline() {
        let mut rate = ErrorRateFromCounters::new();
        assert_eq!(rate.update(100.0, 0.0), None);
        assert_eq!(rate.update(f64::NAN, 0.0), None);
        assert_eq!(rate.update(-1.0, 0.0), None);
        assert_close(rate.update(200.0, 20.0), 20.0);
    }

    #[test]
    fn counters_from_text_treat_missing_failed_series_as_zero() {
        let total = selector("http_requests_total");
        let failed = selector(r#"http_requests_total{code=~"5.."}"#);
        let mut rate = ErrorRateFromCounters::new();
        let scrape = |ok: u32, err: Option<u32>| {
            let ok = format!("http_requests_total{{code=\"200\"}} {ok}\n");
            let failed = err
                .map(|err| format!("http_requests_total{{code=\"500\"}} {err}\n"))
                .unwrap_or_default();
            ok + &failed
        };
        assert_eq!(
            rate.update_from_text(&scrape(10, None), &total, &failed),
            None
        );
        assert_close(
            rate.update_from_text(&scrape(20, None), &total, &failed),
            0.0,
        );
        assert_close(
            rate.update_from_text(&scrape(25, Some(5)), &total, &failed),
            50.0,
        );
        assert_eq!(rate.update_from_text("", &total, &failed), None);
        assert_close(
            rate.update_from_text(&scrape(35, Some(5)), &total, &failed),
            0.0,
        );
    }

    // ---- check window ----

    #[test]
    fn check_window_rate_and_pruning() {
        let mut window = CheckWindow::new(secs(10));
        let t0 = Instant::now();
        assert_eq!(window.rate(t0), None);
        assert!(window.is_empty());
        window.record(t0, false);
        window.record(t0 + secs(5), true);
        assert_close(window.rate(t0 + secs(5)), 50.0);
        // Exactly one window old still counts.
        assert_close(window.rate(t0 + secs(10)), 50.0);
        assert_close(window.rate(t0 + secs(11)), 0.0);
        window.record(t0 + secs(10), true);
        assert_eq!(window.len(), 3, "exactly one window old is kept");
        window.record(t0 + secs(12), true);
        assert_eq!(window.len(), 3, "the failure at t0 was pruned");
        assert_close(window.rate(t0 + secs(12)), 0.0);
        assert_eq!(window.rate(t0 + secs(30)), None);
    }

    #[test]
    fn check_window_is_bounded() {
        let mut window = CheckWindow::new(secs(3600));
        let t0 = Instant::now();
        for _ in 0..5 {
            window.record(t0, false);
        }
        for _ in 0..MAX_CHECKS {
            window.record(t0, true);
        }
        assert_eq!(window.len(), MAX_CHECKS);
        assert_close(window.rate(t0), 0.0);
    }

    // ---- trigger ----

    #[test]
    fn trigger_fires_at_threshold_and_none_keeps_state() {
        let mut trigger = Trigger::new(90.0, 5.0, Duration::ZERO);
        let t0 = Instant::now();
        assert!(!trigger.update(t0, Some(89.9)));
        assert!(!trigger.update(t0, None));
        assert!(
            !trigger.update(t0, Some(f64::INFINITY)),
            "non-finite keeps state"
        );
        assert!(trigger.update(t0, Some(90.0)));
        assert!(trigger.update(t0 + secs(1), None));
        assert!(trigger.update(t0 + secs(1), Some(f64::NAN)));
        assert!(trigger.firing());
        assert!(!trigger.update(t0 + secs(2), Some(84.9)));
        assert!(
            !trigger.update(t0 + secs(3), Some(89.0)),
            "below threshold does not refire"
        );
    }

    #[test]
    fn trigger_hysteresis_band_keeps_firing() {
        let mut trigger = Trigger::new(90.0, 5.0, secs(30));
        let t0 = Instant::now();
        assert!(trigger.update(t0, Some(95.0)));
        assert!(trigger.update(t0 + secs(40), Some(86.0)));
        assert!(
            trigger.update(t0 + secs(41), Some(85.0)),
            "boundary is not below"
        );
        assert!(!trigger.update(t0 + secs(42), Some(84.9)));
    }

    #[test]
    fn trigger_min_hold_delays_clearing() {
        let mut trigger = Trigger::new(90.0, 5.0, secs(30));
        let t0 = Instant::now();
        assert!(trigger.update(t0, Some(91.0)));
        assert!(trigger.update(t0 + secs(29), Some(10.0)));
        assert!(!trigger.update(t0 + secs(30), Some(10.0)));
        // Refiring starts a new hold period.
        assert!(trigger.update(t0 + secs(31), Some(99.0)));
        assert!(trigger.update(t0 + secs(50), Some(10.0)));
        assert!(!trigger.update(t0 + secs(61), Some(10.0)));
    }

    #[test]
    fn trigger_sanitises_hysteresis() {
        let mut trigger = Trigger::new(50.0, -10.0, Duration::ZERO);
        let t0 = Instant::now();
        assert!(trigger.update(t0, Some(50.0)));
        assert!(!trigger.update(t0, Some(49.9)));
    }

    // ---- verdict ----

    #[test]
    fn verdict_lists_firing_triggers() {
        let t0 = Instant::now();
        let mut cpu = Trigger::new(90.0, 5.0, secs(60));
        let mut memory = Trigger::new(85.5, 5.0, secs(60));
        let mut errors = Trigger::new(5.0, 1.0, secs(60));
        cpu.update(t0, Some(97.0));
        memory.update(t0, Some(91.25));
        errors.update(t0, Some(1.0));
        let v = verdict(&[
            ("cpu", &cpu, Some(97.0)),
            ("memory", &memory, Some(91.25)),
            ("errors", &errors, Some(1.0)),
        ]);
        assert_eq!(
            v,
            Verdict {
                draining: true,
                reason: "cpu 97% >= 90%, memory 91.3% >= 85.5%".into()
            }
        );
    }

    #[test]
    fn verdict_describes_held_triggers_truthfully() {
        let t0 = Instant::now();
        let mut cpu = Trigger::new(90.0, 5.0, secs(60));
        cpu.update(t0, Some(95.0));
        cpu.update(t0 + secs(1), Some(87.0));
        let v = verdict(&[("cpu", &cpu, Some(87.0))]);
        assert_eq!(v.reason, "cpu 87% (held, threshold 90%)");
        let v = verdict(&[("cpu", &cpu, None)]);
        assert_eq!(v.reason, "cpu n/a (held, threshold 90%)");
        assert!(v.draining);
    }

    #[test]
    fn verdict_not_draining_when_nothing_fires() {
        let cpu = Trigger::new(90.0, 5.0, secs(60));
        assert_eq!(verdict(&[("cpu", &cpu, Some(50.0))]), Verdict::default());
        assert_eq!(verdict(&[]), Verdict::default());
    }

    #[test]
    fn numbers_format_with_at_most_one_decimal() {
        assert_eq!(format_number(97.0), "97");
        assert_eq!(format_number(12.5), "12.5");
        assert_eq!(format_number(97.96), "98");
        assert_eq!(format_number(-0.01), "0");
        assert_eq!(format_number(0.3333), "0.3");
    }

    #[test]
    fn signals_default_is_all_unknown() {
        let signals = Signals::default();
        assert_eq!(signals.cpu_percent, None);
        assert_eq!(signals.memory_percent, None);
        assert_eq!(signals.error_rate_percent, None);
    }
}
