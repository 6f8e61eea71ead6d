//! What an MLflow model version becomes in a Ferry release: its name, its version and its
//! signed lineage. Pure: the records fetched from the tracking server in, values out.
//!
//! | MLflow | Ferry |
//! |---|---|
//! | registered model name | model name (lowercased; other characters become `-`), or `--name` |
//! | version `N` | `N.0.0`, or the version's tag `ferry.version`, or `--version` |
//! | the version's files (a directory) | one directory artifact, `model.tar` → `model/` |
//! | run tag `mlflow.source.git.commit` | `code_commit` |
//! | run params | `hyperparameters` |
//! | run metrics (latest value of each) | `metrics` (non-finite values left out) |
//! | run and version tags (not `mlflow.*`) | `tags` (the version's win) |
//! | run dataset inputs (name, digest, source, context) | `datasets` (source URI, role) |
//! | `MLmodel` signature (inputs, outputs, params) | `interface`, format `mlflow-signature` |
//! | `MLmodel` flavor and its `*_version` | `framework` |
//! | `requirements.txt` (`pkg==version`), `MLmodel`'s `mlflow_version` | `dependencies` |
//! | tags `ferry.input_schema`, `ferry.output_schema`, `ferry.accepts_input` | the schemas |
//! | tag `ferry.owner`, else the run's user | `owner` |
//! | version description | `changelog` |
//! | versions of the same model made by the parent run (`mlflow.parentRunId`), params or tags naming `models:/NAME/N`, tag `ferry.parents` | `parents` |
//! | tracking URI, name, version, run id and link, experiment | `source` |

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use ferry_shared::manifest::{DatasetUse, Framework, Interface, Source};
use ferry_shared::{Lineage, ModelName, Version};

use super::mlflow::{Experiment, KeyValue, MlModel, ModelVersion, Run};

/// Everything read from the tracking server about one model version.
pub(crate) struct Found {
    /// The tracking server's base URL.
    pub(crate) tracking: String,
    pub(crate) version: ModelVersion,
    pub(crate) run: Option<Run>,
    pub(crate) experiment: Option<Experiment>,
    pub(crate) mlmodel: Option<MlModel>,
    /// The model's `requirements.txt`.
    pub(crate) requirements: Option<String>,
    /// Every version of the same registered model (for parents).
    pub(crate) siblings: Vec<ModelVersion>,
}

/// The Ferry model name for an MLflow registered model name.
pub(crate) fn ferry_name(mlflow: &str) -> Result<ModelName> {
    let mut name: String = mlflow
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    name.truncate(64);
    name.parse().with_context(|| {
        format!("MLflow model {mlflow:?} has no usable Ferry name; give one with --name")
    })
}

/// The Ferry version of an MLflow model version: `given`, else its `ferry.version` tag, else
/// its integer version `N` as `N.0.0` (MLflow numbers versions 1, 2, 3 …, each a new model:
/// a major version apiece keeps Ferry's order the registry's).
pub(crate) fn ferry_version(mv: &ModelVersion, given: Option<&str>) -> Result<Version> {
    if let Some(v) = given {
        return v
            .parse()
            .with_context(|| format!("--version {v}: not a semantic version"));
    }
    if let Some(tag) = tag(&mv.tags, "ferry.version") {
        return tag.parse().with_context(|| {
            format!(
                "{} version {}: tag ferry.version = {tag:?} is not a semantic version",
                mv.name, mv.version
            )
        });
    }
    let n: u64 = mv.version.parse().with_context(|| {
        format!(
            "MLflow version {:?} of {} is not an integer; give --version",
            mv.version, mv.name
        )
    })?;
    if n == 0 {
        bail!("MLflow version 0 of {}: give --version", mv.name);
    }
    Ok(Version::new(n, 0, 0))
}

fn tag<'a>(tags: &'a [KeyValue], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
        .filter(|v| !v.is_empty())
}

/// The release's signed lineage.
pub(crate) fn lineage(found: &Found) -> Lineage {
    let mv = &found.version;
    let run_tags: &[KeyValue] = found.run.as_ref().map_or(&[], |r| &r.data.tags);
    // A version's own tag speaks for it before its run's.
    let either = |key: &str| tag(&mv.tags, key).or_else(|| tag(run_tags, key));
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    for t in run_tags.iter().chain(&mv.tags) {
        if !t.key.starts_with("mlflow.") {
            tags.insert(t.key.clone(), t.value.clone());
        }
    }
    let (hyperparameters, metrics, datasets) = match &found.run {
        Some(run) => (
            run.data
                .params
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
            run.data
                .metrics
                .iter()
                .filter(|m| m.value.is_finite())
                .map(|m| (m.key.clone(), m.value))
                .collect(),
            run.inputs.dataset_inputs.iter().map(dataset_use).collect(),
        ),
        None => Default::default(),
    };
    let mlmodel = found.mlmodel.as_ref();
    let mut dependencies = found
        .requirements
        .as_deref()
        .map(pinned_requirements)
        .unwrap_or_default();
    // The MLflow that wrote the model loads it: pinned when requirements.txt does not.
    if let Some(v) = mlmodel.and_then(|m| m.mlflow_version.clone()) {
        dependencies.entry("mlflow".into()).or_insert(v);
    }
    Lineage {
        code_commit: tag(run_tags, "mlflow.source.git.commit").map(str::to_owned),
        dataset: None,
        hyperparameters,
        framework: mlmodel.and_then(framework),
        dependencies,
        metrics,
        input_schema: either("ferry.input_schema").map(str::to_owned),
        output_schema: either("ferry.output_schema").map(str::to_owned),
        accepts_input: either("ferry.accepts_input").map(str::to_owned),
        owner: either("ferry.owner").map(str::to_owned).or_else(|| {
            found
                .run
                .as_ref()
                .map(|r| r.info.user_id.clone())
                .filter(|u| !u.is_empty())
        }),
        changelog: Some(mv.description.clone()).filter(|d| !d.is_empty()),
        parents: parents(found),
        datasets,
        interface: mlmodel
            .and_then(|m| m.signature.as_ref())
            .map(|s| Interface {
                format: "mlflow-signature".into(),
                inputs: s.inputs.clone(),
                outputs: s.outputs.clone(),
                params: s.params.clone(),
            }),
        tags,
        source: Some(source(found)),
    }
}

fn dataset_use(input: &super::mlflow::DatasetInput) -> DatasetUse {
    let d = &input.dataset;
    // The source is JSON whose shape depends on its type; most carry a `uri` (or `url`,
    // `path`). A dataset built in code has none worth keeping.
    let source = serde_json::from_str::<serde_json::Value>(&d.source)
        .ok()
        .and_then(|v| {
            ["uri", "url", "path"]
                .iter()
                .find_map(|k| v.get(k).and_then(|s| s.as_str()).map(str::to_owned))
        });
    DatasetUse {
        name: d.name.clone(),
        digest: Some(d.digest.clone()).filter(|s| !s.is_empty()),
        source,
        role: tag(&input.tags, "mlflow.data.context").map(str::to_owned),
    }
}

/// The flavor that names its library's version (`sklearn_version`, `pytorch_version`, …),
/// else Python itself.
fn framework(mlmodel: &MlModel) -> Option<Framework> {
    let version_of = |flavor: &serde_norway::Value| -> Option<String> {
        let map = flavor.as_mapping()?;
        map.iter().find_map(|(k, v)| {
            let key = k.as_str()?;
            let value = v.as_str()?;
            (key.ends_with("_version") && key != "python_version").then(|| value.to_owned())
        })
    };
    mlmodel
        .flavors
        .iter()
        .filter(|(name, _)| name.as_str() != "python_function")
        .find_map(|(name, flavor)| {
            version_of(flavor).map(|version| Framework {
                name: name.clone(),
                version,
            })
        })
        .or_else(|| {
            let python = mlmodel.flavors.get("python_function")?.as_mapping()?;
            let version = python.get("python_version")?.as_str()?;
            Some(Framework {
                name: "python".into(),
                version: version.to_owned(),
            })
        })
}

/// `name==version` lines of a requirements file (markers and comments dropped; ranges and
/// bare names are not pins, so not kept).
fn pinned_requirements(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.split(';').next()?.trim();
            let (name, version) = line.split_once("==")?;
            let (name, version) = (name.trim(), version.trim());
            (!name.is_empty() && !version.is_empty() && !name.starts_with('-'))
                .then(|| (name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// Earlier versions of the same model this one came from.
fn parents(found: &Found) -> Vec<Version> {
    let mv = &found.version;
    let mut out = BTreeSet::new();
    let ferry_of = |v: &ModelVersion| ferry_version(v, None).ok();
    if let Some(listed) = tag(&mv.tags, "ferry.parents") {
        out.extend(listed.split(',').filter_map(|v| v.trim().parse().ok()));
    }
    let (params, run_tags): (&[KeyValue], &[KeyValue]) = match &found.run {
        Some(r) => (&r.data.params, &r.data.tags),
        None => (&[], &[]),
    };
    // `models:/NAME/N` naming a version of this same model.
    let prefix = format!("models:/{}/", mv.name);
    for value in params
        .iter()
        .chain(run_tags)
        .chain(&mv.tags)
        .map(|t| &t.value)
    {
        if let Some(n) = value.strip_prefix(&prefix)
            && let Some(sibling) = found.siblings.iter().find(|s| s.version == n)
            && let Some(v) = ferry_of(sibling)
        {
            out.insert(v);
        }
    }
    // Versions registered from the run this one's run was nested in (a fine-tuning run under
    // the base model's).
    if let Some(parent_run) = tag(run_tags, "mlflow.parentRunId") {
        for sibling in found.siblings.iter().filter(|s| s.run_id == parent_run) {
            out.extend(ferry_of(sibling));
        }
    }
    let own = ferry_of(mv);
    out.into_iter()
        .filter(|v| Some(v) != own.as_ref())
        .collect()
}

fn source(found: &Found) -> Source {
    let mv = &found.version;
    let base = &found.tracking;
    let run = found.run.as_ref();
    Source {
        registry: "mlflow".into(),
        uri: format!("{base}/#/models/{}/versions/{}", mv.name, mv.version),
        model: Some(mv.name.clone()),
        model_version: Some(mv.version.clone()),
        run_id: Some(mv.run_id.clone()).filter(|r| !r.is_empty()),
        run_uri: run.map(|r| {
            format!(
                "{base}/#/experiments/{}/runs/{}",
                r.info.experiment_id, r.info.run_id
            )
        }),
        experiment: found
            .experiment
            .as_ref()
            .map(|e| e.name.clone())
            .or_else(|| run.map(|r| r.info.experiment_id.clone())),
    }
}

#[cfg(test)]
mod tests;
