//! The release metadata file (`--meta meta.toml`) that `ferryctl publish` signs into the
//! manifest. Every field is documented in `coordinator/meta.example.toml`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use ferry_shared::Version;
use ferry_shared::manifest::{DatasetRef, DatasetUse, Framework, Interface, Lineage, Source};
use serde::Deserialize;

/// The file's shape.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetaFile {
    code_commit: Option<String>,
    dataset: Option<DatasetRef>,
    #[serde(default)]
    hyperparameters: BTreeMap<String, toml::Value>,
    framework: Option<Framework>,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    input_schema: Option<String>,
    output_schema: Option<String>,
    accepts_input: Option<String>,
    owner: Option<String>,
    changelog: Option<String>,
    #[serde(default)]
    parents: Vec<Version>,
    #[serde(default)]
    datasets: Vec<DatasetEntry>,
    interface: Option<Interface>,
    #[serde(default)]
    tags: BTreeMap<String, toml::Value>,
    source: Option<Source>,
}

/// One `[[datasets]]` entry: every key optional but the name, so the file stays short.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetEntry {
    name: String,
    digest: Option<String>,
    source: Option<String>,
    role: Option<String>,
}

impl MetaFile {
    /// Reads and parses a metadata file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// The manifest's lineage section. Hyperparameters and tags keep their TOML spelling as
    /// text.
    pub(crate) fn into_lineage(self) -> Lineage {
        Lineage {
            hyperparameters: as_text(self.hyperparameters),
            tags: as_text(self.tags),
            datasets: self
                .datasets
                .into_iter()
                .map(|d| DatasetUse {
                    name: d.name,
                    digest: d.digest,
                    source: d.source,
                    role: d.role,
                })
                .collect(),
            interface: self.interface,
            source: self.source,
            code_commit: self.code_commit,
            dataset: self.dataset,
            framework: self.framework,
            dependencies: self.dependencies,
            metrics: self.metrics,
            input_schema: self.input_schema,
            output_schema: self.output_schema,
            accepts_input: self.accepts_input,
            owner: self.owner,
            changelog: self.changelog,
            parents: self.parents,
        }
    }
}

/// TOML values as text: strings as they are, anything else in its TOML spelling.
fn as_text(table: BTreeMap<String, toml::Value>) -> BTreeMap<String, String> {
    table
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("meta.example.toml");
        let lineage = MetaFile::load(&path).unwrap().into_lineage();
        assert_eq!(lineage.hyperparameters["learning_rate"], "0.001");
        assert_eq!(lineage.hyperparameters["optimizer"], "adamw");
        assert_eq!(lineage.dataset.unwrap().id, "transactions");
        assert!(lineage.metrics["accuracy"] > 0.9);
        assert_eq!(lineage.tags["ticket"], "ML-1234");
        assert_eq!(lineage.datasets.len(), 2);
        assert_eq!(lineage.datasets[1].role.as_deref(), Some("eval"));
        assert_eq!(lineage.interface.unwrap().format, "mlflow-signature");
        assert_eq!(lineage.source.unwrap().model_version.as_deref(), Some("7"));
    }
}
