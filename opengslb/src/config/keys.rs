//! Which config keys the code acts on. A key the original knows but that we do not act on yet is accepted,
//! and [`Config::unused_sections`](super::Config::unused_sections) lists it so the binary can warn.
//!
//! Keys are named by their path, with `[]` standing for any list element: `agent.backends[].port`. A key is
//! acted on when the longest entry of [`ACTED_ON`] or [`NOT_YET`] that covers it (equals it, or is a prefix
//! of it ending at a `.` or `[`) is in [`ACTED_ON`]. Wiring a feature means moving its keys here.

use serde_norway::Value;

/// Key paths the code acts on, with everything under them unless [`NOT_YET`] says otherwise.
pub(super) const ACTED_ON: &[&str] = &[
    "mode",
    "includes",
    "dns",
    "regions",
    "domains",
    "metrics",
    "logging",
    "overwatch.validation",
    "overwatch.identity",
    "overwatch.gossip",
    "overwatch.agent_tokens",
    "overwatch.data_dir",
    "overwatch.store",
    // `enabled: true` is refused; with nothing to sign, the other keys have nothing to configure.
    "overwatch.dnssec",
    "api",
    "agent",
    "overwatch.stale",
    "overwatch.geolocation",
    "geolocation",
    "latency_config",
];

/// Exceptions inside [`ACTED_ON`]: keys under an acted-on path that are not acted on yet.
pub(super) const NOT_YET: &[&str] = &[];

/// Whether the key at `path` is acted on.
pub(super) fn acted_on(path: &str) -> bool {
    let covers = |entry: &&str| {
        path.strip_prefix(*entry)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    };
    let best = |list: &[&str]| list.iter().filter(|e| covers(e)).map(|e| e.len()).max();
    match (best(ACTED_ON), best(NOT_YET)) {
        (Some(yes), Some(no)) => yes > no,
        (yes, _) => yes.is_some(),
    }
}

/// The paths of the keys written in `doc` that are not acted on, deepest keys only (a key holding a mapping
/// is named by the keys inside it), in document order, each once.
pub(super) fn unused_keys(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(doc, "", &mut out);
    out
}

fn walk(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = match key {
                    Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                let child_path = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                walk(child, &child_path, out);
            }
        }
        Value::Sequence(items) if items.iter().any(|i| matches!(i, Value::Mapping(_))) => {
            let child_path = format!("{path}[]");
            for item in items {
                walk(item, &child_path, out);
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, path, out),
        _ => {
            if !path.is_empty() && !acted_on(path) && !out.iter().any(|p| p == path) {
                out.push(path.to_owned());
            }
        }
    }
}
