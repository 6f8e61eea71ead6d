//! Mirrors: plain HTTP(S) servers that hold copies of the coordinator's chunk frames (a CDN,
//! a LAN cache, a static server over a copy of the chunk directory, a bucket's public
//! address). A mirror is never trusted: an agent checks every chunk it gets from one against
//! the signed chunk index, so a mirror can fail a device but never fool it.
//!
//! A mirror holds each chunk's stored zstd frame under the same name the coordinator's chunk
//! directory and S3 prefix use ([`frame_path`]), so any copy of either serves as a mirror.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Longest mirror address accepted (bytes).
pub const MAX_MIRROR_URL: usize = 2048;

/// Where chunk `hash`'s frame is kept under a chunk root: `ab/ab…(64 hex).zst`.
pub fn frame_path(hash: &Digest) -> String {
    let hex = hash.to_hex();
    format!("{}/{hex}.zst", &hex[..2])
}

/// A mirror's base address: `http://` or `https://`, ending in `/` (added when missing), so
/// a chunk's address is the base followed by its [`frame_path`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MirrorBase(String);

/// Why a mirror address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mirror address `{shown}`: {reason}")]
pub struct MirrorUrlError {
    /// The address as given (cut short when long).
    pub shown: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl MirrorBase {
    /// Checks and normalises a base address.
    pub fn new(text: &str) -> Result<Self, MirrorUrlError> {
        let refuse = |reason| MirrorUrlError {
            shown: text.chars().take(80).collect(),
            reason,
        };
        if text.len() > MAX_MIRROR_URL {
            return Err(refuse("longer than 2048 bytes"));
        }
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .ok_or_else(|| refuse("must start with http:// or https://"))?;
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refuse("holds white space or control characters"));
        }
        if text.contains(['?', '#']) {
            return Err(refuse("a base address takes no query or fragment"));
        }
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err(refuse("needs a host (and no user name or password)"));
        }
        let mut base = text.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Self(base))
    }

    /// The address of chunk `hash`'s frame on this mirror.
    pub fn frame_url(&self, hash: &Digest) -> String {
        format!("{}{}", self.0, frame_path(hash))
    }

    /// The base address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MirrorBase {
    type Error = MirrorUrlError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(&text)
    }
}

impl From<MirrorBase> for String {
    fn from(base: MirrorBase) -> String {
        base.0
    }
}

impl fmt::Display for MirrorBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MirrorBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MirrorBase({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_gets_its_slash_and_names_frames_like_the_chunk_directory() {
        let base = MirrorBase::new("http://cache.lan:8080/ferry").unwrap();
        assert_eq!(base.as_str(), "http://cache.lan:8080/ferry/");
        let hash = Digest::of(b"chunk");
        let hex = hash.to_hex();
        assert_eq!(
            base.frame_url(&hash),
            format!("http://cache.lan:8080/ferry/{}/{hex}.zst", &hex[..2])
        );
        assert_eq!(
            MirrorBase::new("https://cdn.example/").unwrap().as_str(),
            "https://cdn.example/"
        );
    }

    #[test]
    fn addresses_that_are_not_plain_http_bases_are_refused() {
        for bad in [
            "ftp://x/",
            "cache.lan/",
            "http://",
            "http:///path",
            "http://user:pw@host/",
            "http://host/a b",
            "http://host/?sig=1",
            "http://host/#x",
            "http://host/\n",
        ] {
            assert!(MirrorBase::new(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_MIRROR_URL));
        assert!(MirrorBase::new(&long).is_err());
    }

    #[test]
    fn a_base_read_from_toml_or_json_is_checked() {
        let ok: MirrorBase = serde_json::from_str("\"http://h:1/x\"").unwrap();
        assert_eq!(ok.as_str(), "http://h:1/x/");
        assert!(serde_json::from_str::<MirrorBase>("\"file:///etc\"").is_err());
    }
}
