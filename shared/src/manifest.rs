//! The release manifest: what a published version is, where it runs, and where it came from.
//!
//! A `Release` is encoded canonically with postcard (maps are `BTreeMap`, so encoding is a pure
//! function of the value) and signed as a whole; see [`crate::sign`]. Decoding checks that the
//! bytes are exactly the canonical encoding, so no two byte strings carry the same release.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::name::{FileName, ModelName};
use crate::version::Version;

/// The manifest format this build writes and understands.
/// 2: every manifest carries its own document version (`revision`) and an expiry.
pub const MANIFEST_SCHEMA: u32 = 2;

/// Largest canonical manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// One immutable published version of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Manifest format version ([`MANIFEST_SCHEMA`]).
    pub schema: u32,
    /// The model this is a version of.
    pub name: ModelName,
    /// The version; `(name, version)` is published once.
    pub version: Version,
    /// This manifest document's own version: 1 when first signed, one more each time the
    /// publisher signs the same content again (to extend or cut short its life, or under a
    /// new key). A device refuses a revision lower than one it has seen.
    pub revision: u32,
    /// Unix seconds from which devices refuse to install it (a publisher signature does not
    /// vouch for a release forever: freeze attacks). What a device already runs keeps running.
    pub expires: u64,
    /// When the publisher built the manifest, in Unix seconds.
    pub created_at: u64,
    /// Who published it (free text: a person or a CI job).
    pub created_by: String,
    /// The builds of this version, one per hardware target.
    pub variants: Vec<Variant>,
    /// Whether a GPU device may run a CPU build of it when there is no GPU build (the
    /// publisher knows whether the model is usable, and fast enough, that way).
    pub cpu_fallback: bool,
    /// Lineage and descriptive metadata.
    pub metadata: Lineage,
}

/// One build of a release for one kind of device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Target triple it runs on, or any.
    pub target: Target,
    /// Accelerator it needs, or any.
    pub accelerator: Accelerator,
    /// File name the artifact is installed under.
    pub file_name: FileName,
    /// Exact size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole file.
    pub hash: Digest,
    /// Digest of the file's chunk index ([`crate::chunk::ChunkIndex::digest`]): puts every
    /// chunk hash, and so every chunk a device fetches, under the release signature.
    pub chunks: Digest,
}

/// Where a release came from and what it is: the lineage a registry must keep.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Commit of the training / packaging code.
    pub code_commit: Option<String>,
    /// Training dataset.
    pub dataset: Option<DatasetRef>,
    /// Hyperparameters, as text.
    pub hyperparameters: BTreeMap<String, String>,
    /// Framework the model needs at inference.
    pub framework: Option<Framework>,
    /// Pinned inference dependencies: package → version.
    pub dependencies: BTreeMap<String, String>,
    /// Evaluation metrics: name → value (finite numbers).
    pub metrics: BTreeMap<String, f64>,
    /// Version of the input schema the model expects.
    pub input_schema: Option<String>,
    /// Version of the output schema the model produces.
    pub output_schema: Option<String>,
    /// The input schema versions the model accepts (`tx-features/v2..v3`); `None`: exactly
    /// `input_schema`.
    pub accepts_input: Option<String>,
    /// Team or person responsible.
    pub owner: Option<String>,
    /// What changed since the parent versions.
    pub changelog: Option<String>,
    /// Versions of the same model this one was derived from.
    pub parents: Vec<Version>,
}

/// The dataset a model was trained on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// Dataset identifier.
    pub id: String,
    /// Dataset version.
    pub version: String,
    /// Content hash of the dataset, as the training pipeline computed it.
    pub hash: Option<String>,
}

/// An inference framework and its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Framework {
    /// Framework name (`onnxruntime`, `pytorch`, …).
    pub name: String,
    /// Its version.
    pub version: String,
}

/// Which processors a variant is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// Runs anywhere.
    Any,
    /// CPU inference.
    Cpu,
    /// Needs a GPU.
    Gpu,
}

/// The platform a variant is built for: a Rust-style target triple, or any.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Platform-independent (weights, data).
    Any,
    /// A target triple such as `aarch64-unknown-linux-gnu`.
    Triple(String),
}

/// A manifest that cannot be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The bytes do not decode as a manifest.
    #[error("manifest does not decode: {0}")]
    Decode(String),
    /// The bytes decode but are not the canonical encoding.
    #[error("manifest bytes are not in canonical form")]
    NotCanonical,
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {0} bytes; the limit is {MAX_MANIFEST_BYTES}")]
    TooLarge(usize),
    /// Written by an unknown format version.
    #[error("manifest schema {found} is not supported (this build understands {MANIFEST_SCHEMA})")]
    Schema {
        /// The schema the manifest declares.
        found: u32,
    },
    /// Semantically invalid.
    #[error("manifest for {name} {version} is invalid: {reason}")]
    Invalid {
        /// Model name.
        name: String,
        /// The version, as written.
        version: String,
        /// What is wrong.
        reason: String,
    },
}

impl Release {
    /// The canonical bytes that get signed.
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let bytes =
            postcard::to_allocvec(self).map_err(|e| ManifestError::Decode(e.to_string()))?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Decodes and validates canonical bytes; anything else is refused.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        // The schema comes first, so a manifest of another format is named as such rather
        // than failing to decode somewhere in the middle.
        let (schema, _) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| ManifestError::Decode(e.to_string()))?;
        if schema != MANIFEST_SCHEMA {
            return Err(ManifestError::Schema { found: schema });
        }
        let release: Release =
            postcard::from_bytes(bytes).map_err(|e| ManifestError::Decode(e.to_string()))?;
        if release.to_canonical_bytes()? != bytes {
            return Err(ManifestError::NotCanonical);
        }
        release.validate()?;
        Ok(release)
    }

    /// Checks the rules a manifest must meet beyond its syntax.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid {
            name: self.name.to_string(),
            version: self.version.to_string(),
            reason,
        };
        if self.variants.is_empty() {
            return Err(invalid("it has no variants".into()));
        }
        if self.revision == 0 {
            return Err(invalid("revisions start at 1".into()));
        }
        // Expiring the moment it was made is allowed: a withdrawal re-signed at once.
        if self.expires < self.created_at {
            return Err(invalid(format!(
                "it expires ({}) before it was made ({})",
                self.expires, self.created_at
            )));
        }
        for (i, a) in self.variants.iter().enumerate() {
            if self.variants[..i]
                .iter()
                .any(|b| a.target == b.target && a.accelerator == b.accelerator)
            {
                return Err(invalid(format!(
                    "two variants for target {} and accelerator {}",
                    a.target, a.accelerator
                )));
            }
            if let Target::Triple(t) = &a.target
                && !is_plausible_triple(t)
            {
                return Err(invalid(format!("`{t}` is not a target triple")));
            }
        }
        if let Some((name, value)) = self.metadata.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(invalid(format!(
                "metric {name} is {value}, not a finite number"
            )));
        }
        if let Some(range) = &self.metadata.accepts_input {
            let range: crate::schema::SchemaRange = range
                .parse()
                .map_err(|e: crate::schema::SchemaError| invalid(e.to_string()))?;
            if let Some(own) = self
                .metadata
                .input_schema
                .as_deref()
                .and_then(|s| s.parse::<crate::schema::SchemaRef>().ok())
                && !range.contains(&own)
            {
                return Err(invalid(format!(
                    "it accepts input {range}, which leaves out its own input schema {own}"
                )));
            }
        }
        if self.metadata.parents.contains(&self.version) {
            return Err(invalid("a version cannot be its own parent".into()));
        }
        Ok(())
    }

    /// True when devices must refuse to install it at `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires
    }

    /// Compares what a release *is* (name, version, variants, metadata), ignoring who built the
    /// manifest, when, its revision and its expiry (what a re-signing may change). `None` when
    /// the content is the same; otherwise what differs.
    pub fn content_difference(&self, other: &Release) -> Option<String> {
        if self.name != other.name || self.version != other.version {
            return Some(format!(
                "{} {} is not {} {}",
                self.name, self.version, other.name, other.version
            ));
        }
        if self.variants.len() != other.variants.len() {
            return Some(format!(
                "{} variants instead of {}",
                other.variants.len(),
                self.variants.len()
            ));
        }
        for (a, b) in self.variants.iter().zip(&other.variants) {
            if a != b {
                return Some(format!(
                    "variant {}/{}: file {} ({} bytes, {}) instead of {} ({} bytes, {})",
                    a.target,
                    a.accelerator,
                    b.file_name,
                    b.size,
                    b.hash.short(),
                    a.file_name,
                    a.size,
                    a.hash.short()
                ));
            }
        }
        if self.metadata != other.metadata {
            return Some("the metadata differs".into());
        }
        None
    }
}

fn is_plausible_triple(t: &str) -> bool {
    let parts = t.split('-').count();
    (2..=5).contains(&parts)
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accelerator::Any => "any",
            Accelerator::Cpu => "cpu",
            Accelerator::Gpu => "gpu",
        })
    }
}

impl FromStr for Accelerator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Accelerator::Any),
            "cpu" => Ok(Accelerator::Cpu),
            "gpu" => Ok(Accelerator::Gpu),
            other => Err(format!("`{other}` is not an accelerator (any, cpu, gpu)")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Any => f.write_str("any"),
            Target::Triple(t) => f.write_str(t),
        }
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "any" {
            Ok(Target::Any)
        } else if is_plausible_triple(s) {
            Ok(Target::Triple(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a target triple (e.g. aarch64-unknown-linux-gnu) or `any`"
            ))
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid release for tests across the crate.
    pub(crate) fn sample() -> Release {
        Release {
            schema: MANIFEST_SCHEMA,
            name: "fraud-detector".parse().unwrap(),
            version: "1.2.0-rc.1".parse().unwrap(),
            revision: 1,
            expires: 1_800_000_000,
            created_at: 1_700_000_000,
            created_by: "ci@example".into(),
            variants: vec![Variant {
                target: Target::Any,
                accelerator: Accelerator::Cpu,
                file_name: "model.onnx".parse().unwrap(),
                size: 11,
                hash: Digest::of(b"hello model"),
                chunks: Digest::of(b"chunk index"),
            }],
            cpu_fallback: false,
            metadata: Lineage {
                code_commit: Some("9f2c1e".into()),
                dataset: Some(DatasetRef {
                    id: "transactions".into(),
                    version: "2024-01".into(),
                    hash: Some("sha256:abcd".into()),
                }),
                metrics: [("accuracy".to_owned(), 0.967)].into(),
                parents: vec!["1.1.0".parse().unwrap()],
                ..Lineage::default()
            },
        }
    }

    #[test]
    fn canonical_round_trip() {
        let release = sample();
        let bytes = release.to_canonical_bytes().unwrap();
        assert_eq!(Release::from_canonical_bytes(&bytes).unwrap(), release);
    }

    #[test]
    fn trailing_bytes_are_not_canonical() {
        let mut bytes = sample().to_canonical_bytes().unwrap();
        bytes.push(0);
        assert_eq!(
            Release::from_canonical_bytes(&bytes),
            Err(ManifestError::NotCanonical)
        );
    }

    #[test]
    fn invalid_manifests_are_refused() {
        let mut r = sample();
        r.variants.push(r.variants[0].clone());
        assert!(matches!(r.validate(), Err(ManifestError::Invalid { .. })));
        let mut r = sample();
        r.metadata.metrics.insert("loss".into(), f64::NAN);
        assert!(r.validate().unwrap_err().to_string().contains("loss"));
        let mut r = sample();
        r.variants.clear();
        assert!(r.validate().is_err());
        let mut r = sample();
        r.revision = 0;
        assert!(r.validate().unwrap_err().to_string().contains("revision"));
        let mut r = sample();
        r.expires = r.created_at - 1;
        assert!(r.validate().unwrap_err().to_string().contains("expires"));
        r.expires = r.created_at;
        assert!(r.validate().is_ok(), "born withdrawn is allowed");
        let mut r = sample();
        r.schema = 1;
        assert_eq!(
            Release::from_canonical_bytes(&postcard::to_allocvec(&r).unwrap()),
            Err(ManifestError::Schema { found: 1 })
        );
        let mut r = sample();
        r.schema = 99;
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(
            Release::from_canonical_bytes(&bytes),
            Err(ManifestError::Schema { found: 99 })
        );
    }

    #[test]
    fn content_difference_ignores_who_when_revision_and_expiry() {
        let a = sample();
        let mut b = sample();
        b.created_at += 100;
        b.created_by = "someone else".into();
        b.revision = 2;
        b.expires += 1000;
        assert_eq!(a.content_difference(&b), None);
        b.variants[0].hash = Digest::of(b"other bytes");
        assert!(
            a.content_difference(&b)
                .unwrap()
                .contains("variant any/cpu")
        );
    }
}
