//! Manifest formats 2 and 3, as the previous builds wrote them: read so that every release
//! signed before still verifies, and written for releases that need nothing newer so that
//! devices still on an older format keep installing them. The layouts here must never change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Accelerator, ArtifactKind, DatasetRef, Framework, Lineage, ManifestError, Release, Target,
    Variant,
};
use crate::digest::Digest;
use crate::name::{FileName, ModelName};
use crate::version::Version;

/// [`Release`] in format 2.
#[derive(Serialize, Deserialize)]
pub(super) struct ReleaseV2 {
    schema: u32,
    name: ModelName,
    version: Version,
    revision: u32,
    expires: u64,
    created_at: u64,
    created_by: String,
    variants: Vec<VariantV2>,
    cpu_fallback: bool,
    metadata: LineageV2,
}

/// [`Variant`] in format 2: always a file.
#[derive(Serialize, Deserialize)]
struct VariantV2 {
    target: Target,
    accelerator: Accelerator,
    file_name: FileName,
    size: u64,
    hash: Digest,
    chunks: Digest,
}

/// [`Lineage`] in format 2.
#[derive(Serialize, Deserialize)]
struct LineageV2 {
    code_commit: Option<String>,
    dataset: Option<DatasetRef>,
    hyperparameters: BTreeMap<String, String>,
    framework: Option<Framework>,
    dependencies: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
    input_schema: Option<String>,
    output_schema: Option<String>,
    accepts_input: Option<String>,
    owner: Option<String>,
    changelog: Option<String>,
    parents: Vec<Version>,
}

impl From<ReleaseV2> for Release {
    fn from(r: ReleaseV2) -> Self {
        let m = r.metadata;
        Release {
            schema: r.schema,
            name: r.name,
            version: r.version,
            revision: r.revision,
            expires: r.expires,
            created_at: r.created_at,
            created_by: r.created_by,
            variants: r
                .variants
                .into_iter()
                .map(|v| Variant {
                    target: v.target,
                    accelerator: v.accelerator,
                    file_name: v.file_name,
                    size: v.size,
                    hash: v.hash,
                    chunks: v.chunks,
                    kind: ArtifactKind::File,
                    requires: Vec::new(),
                })
                .collect(),
            cpu_fallback: r.cpu_fallback,
            metadata: Lineage {
                code_commit: m.code_commit,
                dataset: m.dataset,
                hyperparameters: m.hyperparameters,
                framework: m.framework,
                dependencies: m.dependencies,
                metrics: m.metrics,
                input_schema: m.input_schema,
                output_schema: m.output_schema,
                accepts_input: m.accepts_input,
                owner: m.owner,
                changelog: m.changelog,
                parents: m.parents,
                ..Lineage::default()
            },
        }
    }
}

impl TryFrom<&Release> for ReleaseV2 {
    type Error = ManifestError;

    /// Refuses a release that holds something format 2 cannot (it would be lost unsigned).
    fn try_from(r: &Release) -> Result<Self, ManifestError> {
        r.fits_format(2)?;
        let m = r.metadata.clone();
        Ok(ReleaseV2 {
            schema: r.schema,
            name: r.name.clone(),
            version: r.version.clone(),
            revision: r.revision,
            expires: r.expires,
            created_at: r.created_at,
            created_by: r.created_by.clone(),
            variants: r
                .variants
                .iter()
                .map(|v| VariantV2 {
                    target: v.target.clone(),
                    accelerator: v.accelerator,
                    file_name: v.file_name.clone(),
                    size: v.size,
                    hash: v.hash,
                    chunks: v.chunks,
                })
                .collect(),
            cpu_fallback: r.cpu_fallback,
            metadata: LineageV2 {
                code_commit: m.code_commit,
                dataset: m.dataset,
                hyperparameters: m.hyperparameters,
                framework: m.framework,
                dependencies: m.dependencies,
                metrics: m.metrics,
                input_schema: m.input_schema,
                output_schema: m.output_schema,
                accepts_input: m.accepts_input,
                owner: m.owner,
                changelog: m.changelog,
                parents: m.parents,
            },
        })
    }
}

/// [`Release`] in format 3: variants carry no requirements.
#[derive(Serialize, Deserialize)]
pub(super) struct ReleaseV3 {
    schema: u32,
    name: ModelName,
    version: Version,
    revision: u32,
    expires: u64,
    created_at: u64,
    created_by: String,
    variants: Vec<VariantV3>,
    cpu_fallback: bool,
    metadata: Lineage,
}

/// [`Variant`] in format 3.
#[derive(Serialize, Deserialize)]
struct VariantV3 {
    target: Target,
    accelerator: Accelerator,
    file_name: FileName,
    size: u64,
    hash: Digest,
    chunks: Digest,
    kind: ArtifactKind,
}

impl From<ReleaseV3> for Release {
    fn from(r: ReleaseV3) -> Self {
        Release {
            schema: r.schema,
            name: r.name,
            version: r.version,
            revision: r.revision,
            expires: r.expires,
            created_at: r.created_at,
            created_by: r.created_by,
            variants: r
                .variants
                .into_iter()
                .map(|v| Variant {
                    target: v.target,
                    accelerator: v.accelerator,
                    file_name: v.file_name,
                    size: v.size,
                    hash: v.hash,
                    chunks: v.chunks,
                    kind: v.kind,
                    requires: Vec::new(),
                })
                .collect(),
            cpu_fallback: r.cpu_fallback,
            metadata: r.metadata,
        }
    }
}

impl TryFrom<&Release> for ReleaseV3 {
    type Error = ManifestError;

    fn try_from(r: &Release) -> Result<Self, ManifestError> {
        r.fits_format(3)?;
        Ok(ReleaseV3 {
            schema: r.schema,
            name: r.name.clone(),
            version: r.version.clone(),
            revision: r.revision,
            expires: r.expires,
            created_at: r.created_at,
            created_by: r.created_by.clone(),
            variants: r
                .variants
                .iter()
                .map(|v| VariantV3 {
                    target: v.target.clone(),
                    accelerator: v.accelerator,
                    file_name: v.file_name.clone(),
                    size: v.size,
                    hash: v.hash,
                    chunks: v.chunks,
                    kind: v.kind,
                })
                .collect(),
            cpu_fallback: r.cpu_fallback,
            metadata: r.metadata.clone(),
        })
    }
}
