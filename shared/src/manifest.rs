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
use crate::requirement::Requirement;
use crate::version::Version;

mod legacy;

/// The newest manifest format this build writes and understands.
/// 2: every manifest carries its own document version (`revision`) and an expiry.
/// 3: directory artifacts, where a release came from (`source`), free-form tags, several
///    datasets with their role, and the model's interface as its framework describes it.
/// 4: what a variant requires of the device's hardware (`cuda >= 12.2`), so one release may
///    carry several builds for the same accelerator.
pub const MANIFEST_SCHEMA: u32 = 4;

/// The oldest manifest format this build reads. A publisher writes the oldest format that can
/// hold the release ([`Release::needed_schema`]), so devices that only know format 2 keep
/// installing releases that use nothing newer.
pub const OLDEST_MANIFEST_SCHEMA: u32 = 2;

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
    /// What the file is: the artifact itself, or a directory packed as an archive that the
    /// device unpacks beside it (format 3).
    #[serde(default)]
    pub kind: ArtifactKind,
    /// What the device must have to run it, beyond target and accelerator (format 4).
    #[serde(default)]
    pub requires: Vec<Requirement>,
}

/// What a variant's file holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// The file is the artifact.
    #[default]
    File,
    /// The file is a directory packed by [`crate::archive`] (its name ends in `.tar`); devices
    /// unpack it into a directory named without the `.tar` beside it, in the same version.
    Directory,
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
    /// Every dataset the model met, with its role (format 3; `dataset` stays for format 2).
    #[serde(default)]
    pub datasets: Vec<DatasetUse>,
    /// The model's inputs and outputs as its framework describes them (format 3).
    #[serde(default)]
    pub interface: Option<Interface>,
    /// Free-form labels, signed with the rest (format 3).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The registry or pipeline the release was imported from (format 3).
    #[serde(default)]
    pub source: Option<Source>,
}

/// A dataset a model was trained, tuned or evaluated on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetUse {
    /// Its name.
    pub name: String,
    /// Its content digest as the pipeline computed it.
    pub digest: Option<String>,
    /// Where it lives (a URI, a table, a path).
    pub source: Option<String>,
    /// What it was used for: `training`, `eval`, … (free text).
    pub role: Option<String>,
}

/// The model's inputs and outputs in its framework's own notation (for MLflow, the model
/// signature's JSON): descriptive, shown on the model card. What devices check is
/// `input_schema` / `accepts_input`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The notation (`mlflow-signature`, …).
    pub format: String,
    /// What the model takes.
    pub inputs: Option<String>,
    /// What it gives back.
    pub outputs: Option<String>,
    /// Inference parameters it accepts.
    pub params: Option<String>,
}

/// Where a release was imported from: the registry's own names for it, so it can be traced back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The kind of registry (`mlflow`, …).
    pub registry: String,
    /// The registry's address for the model version (`http://mlflow:5000/#/models/fraud/versions/3`).
    pub uri: String,
    /// The registry's name for the model.
    pub model: Option<String>,
    /// The registry's version of it (MLflow's integer version).
    pub model_version: Option<String>,
    /// The training run that produced it.
    pub run_id: Option<String>,
    /// Link to that run.
    pub run_uri: Option<String>,
    /// The experiment the run belongs to.
    pub experiment: Option<String>,
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
    /// The canonical bytes that get signed, in the format `schema` names.
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let encode = |e: postcard::Error| ManifestError::Decode(e.to_string());
        let bytes = match self.schema {
            2 => postcard::to_allocvec(&legacy::ReleaseV2::try_from(self)?).map_err(encode)?,
            3 => postcard::to_allocvec(&legacy::ReleaseV3::try_from(self)?).map_err(encode)?,
            MANIFEST_SCHEMA => postcard::to_allocvec(self).map_err(encode)?,
            found => return Err(ManifestError::Schema { found }),
        };
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
        let decode = |e: postcard::Error| ManifestError::Decode(e.to_string());
        let release: Release = match schema {
            2 => postcard::from_bytes::<legacy::ReleaseV2>(bytes)
                .map_err(decode)?
                .into(),
            3 => postcard::from_bytes::<legacy::ReleaseV3>(bytes)
                .map_err(decode)?
                .into(),
            MANIFEST_SCHEMA => postcard::from_bytes(bytes).map_err(decode)?,
            found => return Err(ManifestError::Schema { found }),
        };
        if release.to_canonical_bytes()? != bytes {
            return Err(ManifestError::NotCanonical);
        }
        release.validate()?;
        Ok(release)
    }

    /// The oldest manifest format that can hold this release: 2 unless it uses something a
    /// later format brought.
    pub fn needed_schema(&self) -> u32 {
        self.newest_feature()
            .map_or(OLDEST_MANIFEST_SCHEMA, |(_, format)| format)
    }

    /// The thing in the release that needs the newest format, with that format.
    fn newest_feature(&self) -> Option<(&'static str, u32)> {
        let m = &self.metadata;
        if self.variants.iter().any(|v| !v.requires.is_empty()) {
            Some(("hardware requirements", 4))
        } else if self.variants.iter().any(|v| v.kind != ArtifactKind::File) {
            Some(("a directory artifact", 3))
        } else if !m.datasets.is_empty() {
            Some(("a list of datasets", 3))
        } else if m.interface.is_some() {
            Some(("an interface", 3))
        } else if !m.tags.is_empty() {
            Some(("tags", 3))
        } else if m.source.is_some() {
            Some(("a source", 3))
        } else {
            None
        }
    }

    /// Refuses to write this release in `format` when it holds something that format cannot
    /// (it would be lost unsigned).
    fn fits_format(&self, format: u32) -> Result<(), ManifestError> {
        match self.newest_feature() {
            Some((feature, needs)) if needs > format => Err(self.invalid(format!(
                "manifest format {format} cannot hold {feature}; it needs format {needs}"
            ))),
            _ => Ok(()),
        }
    }

    fn invalid(&self, reason: String) -> ManifestError {
        ManifestError::Invalid {
            name: self.name.to_string(),
            version: self.version.to_string(),
            reason,
        }
    }

    /// Checks the rules a manifest must meet beyond its syntax.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |reason: String| self.invalid(reason);
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
                .any(|b| a.target == b.target && a.accelerator == b.accelerator && same_set(a, b))
            {
                return Err(invalid(format!(
                    "two variants for target {} and accelerator {} with the same requirements",
                    a.target, a.accelerator
                )));
            }
            if a.requires.len() > MAX_REQUIREMENTS {
                return Err(invalid(format!(
                    "variant {}/{} has {} requirements; the limit is {MAX_REQUIREMENTS}",
                    a.target,
                    a.accelerator,
                    a.requires.len()
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
        for v in &self.variants {
            if v.kind == ArtifactKind::Directory && v.file_name.unpacked_dir().is_none() {
                return Err(invalid(format!(
                    "directory artifact {} must be named NAME.tar",
                    v.file_name
                )));
            }
        }
        if self.metadata.datasets.iter().any(|d| d.name.is_empty()) {
            return Err(invalid("a dataset has no name".into()));
        }
        if self.metadata.tags.keys().any(|k| k.is_empty()) {
            return Err(invalid("a tag has no name".into()));
        }
        if let Some(source) = &self.metadata.source
            && (source.registry.is_empty() || source.uri.is_empty())
        {
            return Err(invalid("its source needs a registry and a URI".into()));
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

/// Most requirements one variant may carry.
pub const MAX_REQUIREMENTS: usize = 16;

/// Whether two variants ask the same of the device, in whatever order they list it.
fn same_set(a: &Variant, b: &Variant) -> bool {
    a.requires.len() == b.requires.len() && a.requires.iter().all(|r| b.requires.contains(r))
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
                kind: Default::default(),
                requires: Vec::new(),
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

    /// `sample()` as the format-2 build (307ff93) encoded it: the bytes publishers signed
    /// before format 3. They must decode, verify as canonical and encode back unchanged.
    const SAMPLE_FORMAT_2: &str = "020e66726175642d6465746563746f720a312e322e302d72632e310180a4a7da0680e2cfaa060a6369406578616d706c650103616e79010a6d6f64656c2e6f6e6e780b854e454d13138c0394fded4e14b6179f0ee0cc7e23378f39f70b301f0ca9f215604c668d0cc72131d7c106aae99f9a2420e3e23849bf6a13062f510b33222f1f000106396632633165010c7472616e73616374696f6e7307323032342d3031010b7368613235363a61626364000000010861636375726163798b6ce7fba9f1ee3f00000000000105312e312e30";

    #[test]
    fn a_format_2_manifest_from_the_previous_build_still_decodes_and_re_encodes_the_same() {
        let bytes = hex::decode(SAMPLE_FORMAT_2).unwrap();
        let release = Release::from_canonical_bytes(&bytes).unwrap();
        let mut expected = sample();
        expected.schema = 2;
        assert_eq!(release, expected);
        assert_eq!(release.to_canonical_bytes().unwrap(), bytes);
        assert_eq!(release.needed_schema(), 2);
    }

    /// A release using everything format 3 brought.
    fn sample_format_3() -> Release {
        let mut r = sample();
        r.variants[0].kind = ArtifactKind::Directory;
        r.variants[0].file_name = "model.tar".parse().unwrap();
        r.metadata.datasets = vec![DatasetUse {
            name: "iris".into(),
            digest: Some("b1c2".into()),
            source: Some("file:///data/iris.csv".into()),
            role: Some("training".into()),
        }];
        r.metadata.interface = Some(Interface {
            format: "mlflow-signature".into(),
            inputs: Some("[]".into()),
            outputs: None,
            params: None,
        });
        r.metadata.tags = [("team".to_owned(), "fraud".to_owned())].into();
        r.metadata.source = Some(Source {
            registry: "mlflow".into(),
            uri: "http://mlflow/#/models/m/versions/1".into(),
            model: Some("m".into()),
            model_version: Some("1".into()),
            run_id: Some("abc".into()),
            run_uri: None,
            experiment: Some("0".into()),
        });
        r
    }

    #[test]
    fn format_3_round_trips_every_new_field() {
        let release = sample_format_3();
        assert_eq!(release.needed_schema(), 3);
        let bytes = release.to_canonical_bytes().unwrap();
        assert_eq!(Release::from_canonical_bytes(&bytes).unwrap(), release);
    }

    #[test]
    fn format_2_refuses_to_drop_what_only_format_3_holds() {
        let full = sample_format_3();
        let strip: [fn(&mut Release); 5] = [
            |r| {
                r.variants[0].kind = ArtifactKind::File;
            },
            |r| r.metadata.datasets.clear(),
            |r| r.metadata.interface = None,
            |r| r.metadata.tags.clear(),
            |r| r.metadata.source = None,
        ];
        // Each feature alone is enough to need format 3.
        for keep in 0..strip.len() {
            let mut r = full.clone();
            for (i, f) in strip.iter().enumerate() {
                if i != keep {
                    f(&mut r);
                }
            }
            assert_eq!(r.needed_schema(), 3, "feature {keep}");
            r.schema = 2;
            let err = r.to_canonical_bytes().unwrap_err().to_string();
            assert!(err.contains("needs format 3"), "{err}");
        }
    }

    /// `sample_format_3()` as the format-3 build (8ca952a) encoded it.
    const SAMPLE_FORMAT_3: &str = "030e66726175642d6465746563746f720a312e322e302d72632e310180a4a7da0680e2cfaa060a6369406578616d706c650103616e7901096d6f64656c2e7461720b854e454d13138c0394fded4e14b6179f0ee0cc7e23378f39f70b301f0ca9f215604c668d0cc72131d7c106aae99f9a2420e3e23849bf6a13062f510b33222f1f01000106396632633165010c7472616e73616374696f6e7307323032342d3031010b7368613235363a61626364000000010861636375726163798b6ce7fba9f1ee3f00000000000105312e312e30010469726973010462316332011566696c653a2f2f2f646174612f697269732e6373760108747261696e696e6701106d6c666c6f772d7369676e617475726501025b5d000001047465616d05667261756401066d6c666c6f7723687474703a2f2f6d6c666c6f772f232f6d6f64656c732f6d2f76657273696f6e732f3101016d010131010361626300010130";

    #[test]
    fn a_format_3_manifest_from_the_previous_build_still_decodes_and_re_encodes_the_same() {
        let bytes = hex::decode(SAMPLE_FORMAT_3).unwrap();
        let release = Release::from_canonical_bytes(&bytes).unwrap();
        let mut expected = sample_format_3();
        expected.schema = 3;
        assert_eq!(release, expected);
        assert_eq!(release.to_canonical_bytes().unwrap(), bytes);
        assert_eq!(release.needed_schema(), 3);
    }

    #[test]
    fn format_4_carries_requirements_and_older_formats_refuse_to_drop_them() {
        let mut release = sample_format_3();
        release.variants[0].requires =
            vec!["cuda >= 12.2".parse().unwrap(), "cpu.avx2".parse().unwrap()];
        assert_eq!(release.needed_schema(), 4);
        let bytes = release.to_canonical_bytes().unwrap();
        assert_eq!(Release::from_canonical_bytes(&bytes).unwrap(), release);
        for old in [2, 3] {
            let mut r = release.clone();
            r.schema = old;
            let err = r.to_canonical_bytes().unwrap_err().to_string();
            assert!(
                err.contains("cannot hold hardware requirements; it needs format 4"),
                "{err}"
            );
        }
        // Two builds for one platform are fine when they ask different things, not otherwise.
        let mut two = release.clone();
        let mut other = two.variants[0].clone();
        other.requires = vec!["cuda >= 11.4".parse().unwrap()];
        two.variants.push(other.clone());
        assert!(two.validate().is_ok());
        other.requires = vec!["cpu.avx2".parse().unwrap(), "cuda >= 12.2".parse().unwrap()];
        two.variants[1] = other;
        assert!(
            two.validate()
                .unwrap_err()
                .to_string()
                .contains("same requirements")
        );
        let mut many = release;
        many.variants[0].requires = (0..=MAX_REQUIREMENTS)
            .map(|i| format!("x{i}").parse().unwrap())
            .collect();
        assert!(many.validate().unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn a_directory_artifact_must_be_a_tar_name() {
        let mut r = sample_format_3();
        r.variants[0].file_name = "model.onnx".parse().unwrap();
        let err = r.validate().unwrap_err().to_string();
        assert!(err.contains("NAME.tar"), "{err}");
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
