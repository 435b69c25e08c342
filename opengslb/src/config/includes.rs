//! `includes`: other files merged into the config, as the original merges them. Each entry is a path or a
//! glob pattern (`conf.d/*.yaml`, `sites/**/*.yaml`), relative to the directory of the file that names it;
//! the files a pattern matches are read in name order, directories skipped. An included file may include
//! others in turn, up to [`MAX_DEPTH`] deep.
//!
//! What merges (the original's rules): `regions`, `domains`, `agent.backends` and
//! `overwatch.geolocation.custom_mappings` are appended after what is there already; `overwatch.agent_tokens`
//! are merged by service, the included file's tokens replacing those of the same service. A region or
//! domain name defined twice is refused, naming both files. The original silently ignored every other key
//! of an included file; here such a key is refused, so a setting is never written where it does nothing.
//!
//! Stronger than the original, which dropped a pattern that matched nothing and reported a cycle only
//! when it closed: a path without wildcards must exist, a file is never included twice, and every error
//! names the file and, for a cycle, the chain of files that closes it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use super::{
    AgentBackend, Config, ConfigError, CustomMapping, Domain, GeolocationConfig, Region, Secret,
    de, keys,
};
use crate::name::DnsName;

/// The deepest chain of includes below the main file.
pub const MAX_DEPTH: usize = 10;

/// What an included file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Included {
    #[serde(default, deserialize_with = "de::nullable")]
    includes: Vec<String>,
    #[serde(default, deserialize_with = "de::nullable")]
    regions: Vec<Region>,
    #[serde(default, deserialize_with = "de::nullable")]
    domains: Vec<Domain>,
    #[serde(default, deserialize_with = "de::nullable")]
    overwatch: IncludedOverwatch,
    #[serde(default, deserialize_with = "de::nullable")]
    agent: IncludedAgent,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncludedOverwatch {
    #[serde(default, deserialize_with = "super::overwatch::agent_tokens")]
    agent_tokens: BTreeMap<DnsName, Vec<Secret>>,
    #[serde(default, deserialize_with = "de::nullable")]
    geolocation: IncludedGeolocation,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncludedGeolocation {
    #[serde(default, deserialize_with = "de::nullable")]
    custom_mappings: Vec<CustomMapping>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncludedAgent {
    #[serde(default, deserialize_with = "de::nullable")]
    backends: Vec<AgentBackend>,
}

/// The keys an included file may hold, for the error that refuses another.
const ALLOWED: &str = "regions, domains, overwatch.agent_tokens, overwatch.geolocation.custom_mappings, \
                       agent.backends and includes";

/// Merges the files `config.includes` names (relative to `main`, the file `config` was read from) into
/// `config`, and adds the keys they hold that are not acted on to `unused`.
pub(super) fn merge(
    config: &mut Config,
    main: &Path,
    unused: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let main = absolute(main);
    let id = identity(&main);
    let mut state = State {
        chain: vec![id.clone()],
        seen: vec![id],
        names: HashMap::new(),
    };
    for r in &config.regions {
        state.names.insert(("region", r.name.clone()), main.clone());
    }
    for d in &config.domains {
        state
            .names
            .insert(("domain", d.name.to_string()), main.clone());
    }
    let patterns = config.includes.clone();
    state.include(config, &main, &patterns, unused)
}

/// Files are named as written (made absolute, so relative includes resolve from the directory a file was
/// named in, symlinks and all, as the original does) and told apart by their canonical path.
struct State {
    /// The files from the main one down to the one being read, canonical.
    chain: Vec<PathBuf>,
    /// Every file read so far, canonical.
    seen: Vec<PathBuf>,
    /// Which file defined each region and domain name.
    names: HashMap<(&'static str, String), PathBuf>,
}

impl State {
    fn include(
        &mut self,
        config: &mut Config,
        from: &Path,
        patterns: &[String],
        unused: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let dir = from.parent().unwrap_or(Path::new("/"));
        for pattern in patterns {
            for file in expand(dir, pattern, from)? {
                self.read(config, file, unused)?;
            }
        }
        Ok(())
    }

    fn read(
        &mut self,
        config: &mut Config,
        file: PathBuf,
        unused: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let id = identity(&file);
        if let Some(at) = self.chain.iter().position(|f| *f == id) {
            let cycle: Vec<String> = self.chain[at..]
                .iter()
                .chain([&id])
                .map(|f| f.display().to_string())
                .collect();
            return Err(error(
                &file,
                format!("include cycle: {}", cycle.join(" -> ")),
            ));
        }
        if self.seen.contains(&id) {
            return Err(error(
                &file,
                "included twice: each file may be included once",
            ));
        }
        if self.chain.len() > MAX_DEPTH {
            return Err(error(
                &file,
                format!("includes nest deeper than {MAX_DEPTH} files"),
            ));
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| error(&file, format!("cannot read: {e}")))?;
        let inc: Included = serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(
            &text,
        ))
        .map_err(|e| {
            let mut message = ConfigError::from_yaml(&e).to_string();
            if message.contains("unknown field") {
                message.push_str(&format!(
                    " (an included file holds only {ALLOWED}: set the rest in the main file)"
                ));
            }
            error(&file, message)
        })?;
        check_mode(&file, !inc.overwatch.agent_tokens.is_empty())?;
        if let Ok(doc) = serde_norway::from_str::<Value>(&text) {
            for key in keys::unused_keys(&doc) {
                if !unused.contains(&key) {
                    unused.push(key);
                }
            }
        }
        self.seen.push(id.clone());
        let nested = inc.includes.clone();
        self.absorb(config, inc, &file)?;
        self.chain.push(id);
        self.include(config, &file, &nested, unused)?;
        self.chain.pop();
        Ok(())
    }

    /// Appends (or, for tokens, replaces by service) what `inc`, read from `file`, holds.
    fn absorb(
        &mut self,
        config: &mut Config,
        inc: Included,
        file: &Path,
    ) -> Result<(), ConfigError> {
        let names = inc
            .regions
            .iter()
            .map(|r| ("region", r.name.clone()))
            .chain(inc.domains.iter().map(|d| ("domain", d.name.to_string())));
        for (kind, name) in names {
            if let Some(first) = self.names.insert((kind, name.clone()), file.to_path_buf()) {
                return Err(error(
                    file,
                    format!(
                        "duplicate {kind} name {name:?} (already in {})",
                        first.display()
                    ),
                ));
            }
        }
        config.regions.extend(inc.regions);
        config.domains.extend(inc.domains);
        config.agent.backends.extend(inc.agent.backends);
        config
            .overwatch
            .agent_tokens
            .extend(inc.overwatch.agent_tokens);
        let mappings = inc.overwatch.geolocation.custom_mappings;
        if !mappings.is_empty() {
            // Into whichever geolocation section the main file uses; the original's, if it has none.
            let geo = match (&mut config.overwatch.geolocation, &mut config.geolocation) {
                (Some(g), _) | (None, Some(g)) => g,
                (slot @ None, None) => slot.insert(GeolocationConfig::default()),
            };
            geo.custom_mappings.extend(mappings);
        }
        Ok(())
    }
}

/// The files `pattern` names, relative to `dir`, in name order: a path without wildcards must exist; a
/// glob may match nothing.
fn expand(dir: &Path, pattern: &str, from: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if pattern.trim().is_empty() {
        return Err(error(from, "an empty entry in includes"));
    }
    let full = dir.join(pattern);
    let wild = pattern.contains(['*', '?', '[']);
    if !wild {
        return match std::fs::metadata(&full) {
            Ok(m) if m.is_dir() => Err(error(
                &full,
                format!(
                    "is a directory (included from {}): name files, or a pattern such as {pattern}/*.yaml",
                    from.display()
                ),
            )),
            Ok(_) => Ok(vec![absolute(&full)]),
            Err(e) => Err(error(
                &full,
                format!("cannot include it (named in {}): {e}", from.display()),
            )),
        };
    }
    let text = full.to_str().ok_or_else(|| {
        error(
            from,
            format!("the pattern {pattern:?} is not valid UTF-8 once joined to its directory"),
        )
    })?;
    let paths = glob::glob(text).map_err(|e| {
        error(
            from,
            format!("includes: bad pattern {pattern:?}: {}", e.msg),
        )
    })?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| {
            error(
                e.path(),
                format!("cannot read it while expanding {pattern:?}: {}", e.error()),
            )
        })?;
        if !path.is_dir() {
            files.push(absolute(&path));
        }
    }
    files.sort();
    Ok(files)
}

/// Refuses an included file that others may write (they could add backends), or, when it holds agent
/// tokens, one that others may read: the main file's rule ([`super::check_file_mode`]).
fn check_mode(file: &Path, secrets: bool) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(file)
        .map_err(|e| error(file, format!("cannot read: {e}")))?
        .permissions()
        .mode()
        & 0o7777;
    if secrets {
        super::secret::exposure(file, mode, &["overwatch.agent_tokens"])?;
    }
    if mode & 0o002 != 0 {
        return Err(error(
            file,
            format!(
                "its mode {mode:04o} lets anyone write it, and so add backends: run `chmod o-w {}`",
                file.display()
            ),
        ));
    }
    Ok(())
}

/// `path` made absolute, symlinks kept: the name relative includes resolve from.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What tells files apart: the canonical path, where there is one.
fn identity(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn error(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Include {
        file: file.to_path_buf(),
        message: message.into(),
    }
}
