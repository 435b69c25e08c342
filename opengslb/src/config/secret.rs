//! Secrets read from the config: service tokens and gossip keys. Their `Debug` output is redacted and no
//! error message ever quotes them, so they cannot leak into logs; and a file that holds one must be
//! private to its owner ([`check_file_mode`]), as the original required.

use std::{fmt, path::Path};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Config, ConfigError, de};

impl Config {
    /// The keys of this config that hold a secret, by path (`overwatch.gossip.encryption_key`,
    /// `api.token`, ...), overwatch keys first; empty when it holds none (as the embedded default).
    pub fn secret_keys(&self) -> Vec<&'static str> {
        let (ow, agent) = (&self.overwatch, &self.agent);
        [
            (
                "overwatch.gossip.encryption_key",
                ow.gossip.encryption_key.is_some(),
            ),
            (
                "overwatch.gossip.encryption_keys",
                !ow.gossip.encryption_keys.is_empty(),
            ),
            ("overwatch.agent_tokens", !ow.agent_tokens.is_empty()),
            (
                "agent.identity.service_token",
                agent.identity.service_token.is_some(),
            ),
            (
                "agent.gossip.encryption_key",
                agent.gossip.encryption_key.is_some(),
            ),
            (
                "agent.gossip.encryption_keys",
                !agent.gossip.encryption_keys.is_empty(),
            ),
            ("api.token", self.api.token.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

/// Refuses the config file at `path`, loaded as `config`, when it holds a secret ([`Config::secret_keys`])
/// and users other than its owner may read or write it (any of the mode bits `0o066`): the error names
/// the file, its mode, the keys and the fix. The original refused a world-readable file; a group that
/// can read the gossip key can forge every agent's reports, so it is refused too. A file without
/// secrets may have any mode.
pub fn check_file_mode(path: &Path, config: &Config) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let secrets = config.secret_keys();
    if secrets.is_empty() {
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    exposure(path, meta.permissions().mode() & 0o7777, &secrets)
}

/// [`check_file_mode`] for a file of mode `mode` that holds `secrets`.
pub(super) fn exposure(path: &Path, mode: u32, secrets: &[&str]) -> Result<(), ConfigError> {
    const OPEN: u32 = 0o066;
    if secrets.is_empty() || mode & OPEN == 0 {
        return Ok(());
    }
    let who = match (mode & 0o060 != 0, mode & 0o006 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        _ => "others",
    };
    let what = match (mode & 0o044 != 0, mode & 0o022 != 0) {
        (true, true) => "read and write",
        (true, false) => "read",
        _ => "write",
    };
    Err(ConfigError::Exposed {
        path: path.to_path_buf(),
        mode,
        detail: format!(
            "holds secrets ({}) but its mode {mode:04o} lets {who} {what} it",
            secrets.join(", ")
        ),
    })
}

/// A secret string (an agent's service token). `Debug` prints `Secret(<n chars>)`, never the text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for comparing or sending it; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in characters.
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} chars>)", self.len())
    }
}

/// Serialised as the plain string, for the sealed reports that carry a token.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Length of a gossip key: AES-256 or ChaCha20-Poly1305, as in the original (memberlist's AES-256-GCM).
pub const GOSSIP_KEY_LEN: usize = 32;

/// A gossip encryption key: exactly 32 bytes, written in the config as standard base64 (what
/// `openssl rand -base64 32` prints). `Debug` prints `GossipKey(<redacted>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey([u8; GOSSIP_KEY_LEN]);

impl GossipKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; GOSSIP_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key bytes; do not log them.
    pub fn as_bytes(&self) -> &[u8; GOSSIP_KEY_LEN] {
        &self.0
    }

    /// Decodes a key from base64; the error never quotes the text.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let hint = "generate one with `openssl rand -base64 32`";
        let bytes =
            decode_base64(text.trim()).ok_or_else(|| format!("is not valid base64 ({hint})"))?;
        let bytes: [u8; GOSSIP_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "must decode to exactly {GOSSIP_KEY_LEN} bytes, got {} ({hint})",
                bytes.len()
            )
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GossipKey(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for GossipKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::parse_with(d, "a base64 key of 32 bytes", Self::from_base64)
    }
}

/// Decodes standard base64 (RFC 4648 §4: `A-Z a-z 0-9 + /`), with or without `=` padding, and only a
/// canonical encoding (no stray bits at the end, as Go's decoder is strict here too). `None` for
/// anything else.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::{
        Engine as _, alphabet,
        engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    };
    // Padding, when there is any, must be complete: `Zg=` is refused, `Zg==` and `Zg` are not.
    const fn engine(padding: DecodePaddingMode) -> GeneralPurpose {
        GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(padding),
        )
    }
    const PADDED: GeneralPurpose = engine(DecodePaddingMode::RequireCanonical);
    const BARE: GeneralPurpose = engine(DecodePaddingMode::RequireNone);
    let engine = if text.ends_with('=') { PADDED } else { BARE };
    engine.decode(text).ok()
}
