//! The lineage graph over releases: each release's parents (versions of the same model it was
//! derived from), its dataset (id, version, hash) and its code commit. Queries: a release's
//! ancestry, what was derived from a dataset (directly or through parents), two releases side
//! by side, and a release's model card. Pure: the caller passes the releases.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ferry_shared::manifest::ArtifactKind;
use ferry_shared::{ModelName, Release, Version};
use serde::{Deserialize, Serialize};

/// One release in an ancestry walk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ancestor {
    /// The ancestor's version.
    pub version: Version,
    /// Steps from the release asked about (0: itself).
    pub depth: u32,
    /// The version it was reached from (`None` for the release itself).
    pub child: Option<Version>,
    /// Whether it is published (a parent may name a version never published here).
    pub published: bool,
    /// Its dataset, `id version [hash]`.
    pub dataset: Option<String>,
    /// Its code commit.
    pub code_commit: Option<String>,
}

/// The ancestry of `version` among `releases` (one model's), breadth first: the release, its
/// parents, theirs. Each version appears once, so a cycle in the metadata ends the walk.
pub fn ancestry(releases: &BTreeMap<Version, Release>, version: &Version) -> Vec<Ancestor> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = std::collections::VecDeque::from([(version.clone(), 0u32, None)]);
    while let Some((v, depth, child)) = queue.pop_front() {
        if !seen.insert(v.clone()) {
            continue;
        }
        let release = releases.get(&v);
        out.push(Ancestor {
            version: v.clone(),
            depth,
            child,
            published: release.is_some(),
            dataset: release.and_then(dataset_of),
            code_commit: release.and_then(|r| r.metadata.code_commit.clone()),
        });
        for parent in release
            .map(|r| r.metadata.parents.as_slice())
            .unwrap_or(&[])
        {
            queue.push_back((parent.clone(), depth + 1, Some(v.clone())));
        }
    }
    out
}

fn dataset_of(release: &Release) -> Option<String> {
    release.metadata.dataset.as_ref().map(|d| match &d.hash {
        Some(hash) => format!("{} {} {hash}", d.id, d.version),
        None => format!("{} {}", d.id, d.version),
    })
}

/// A release derived from a dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Derived {
    /// The derived release's model.
    pub model: ModelName,
    /// The derived release's version.
    pub version: Version,
    /// The dataset version it was trained on, or the parent it inherits the dataset from.
    pub how: String,
}

/// Every release derived from dataset `id` (at `version`, when given): trained on it, or
/// descended through parents from one that was.
pub fn derived_from(
    releases: &BTreeMap<ModelName, BTreeMap<Version, Release>>,
    id: &str,
    version: Option<&str>,
) -> Vec<Derived> {
    let mut out = Vec::new();
    for (model, versions) in releases {
        let mut tainted: BTreeMap<Version, String> = BTreeMap::new();
        for (v, release) in versions {
            if let Some(d) = &release.metadata.dataset
                && d.id == id
                && version.is_none_or(|want| want == d.version)
            {
                tainted.insert(v.clone(), format!("trained on {} {}", d.id, d.version));
            } else if let Some(d) = release.metadata.datasets.iter().find(|d| {
                // A listed dataset's version is its digest.
                d.name == id && version.is_none_or(|want| d.digest.as_deref() == Some(want))
            }) {
                let role = d.role.as_deref().unwrap_or("used");
                let digest = d.digest.as_deref().unwrap_or("(no digest)");
                tainted.insert(v.clone(), format!("{role} on {} {digest}", d.name));
            }
        }
        // Children inherit what their parents were derived from, until nothing changes (a
        // parent may be published after its child; cycles stop because nothing is re-added).
        loop {
            let mut grew = false;
            for (v, release) in versions {
                if tainted.contains_key(v) {
                    continue;
                }
                if let Some(parent) = release
                    .metadata
                    .parents
                    .iter()
                    .find(|p| tainted.contains_key(*p))
                {
                    tainted.insert(v.clone(), format!("derived from {parent}"));
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        out.extend(tainted.into_iter().map(|(version, how)| Derived {
            model: model.clone(),
            version,
            how,
        }));
    }
    out
}

/// One line of a side-by-side comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffRow {
    /// What is compared (`metrics.accuracy`, `input_schema`, …).
    pub field: String,
    /// In the first release (empty when absent).
    pub a: String,
    /// In the second.
    pub b: String,
    /// Whether they differ.
    pub differs: bool,
}

/// `a` and `b` side by side: lineage, schemas, framework, dependencies, hyperparameters,
/// metrics (with the change), and variants.
pub fn diff(a: &Release, b: &Release) -> Vec<DiffRow> {
    let mut rows = Vec::new();
    let mut row = |field: String, x: String, y: String| {
        let differs = x != y;
        rows.push(DiffRow {
            field,
            a: x,
            b: y,
            differs,
        });
    };
    let (ma, mb) = (&a.metadata, &b.metadata);
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    row(
        "created_by".into(),
        a.created_by.clone(),
        b.created_by.clone(),
    );
    row(
        "code_commit".into(),
        opt(&ma.code_commit),
        opt(&mb.code_commit),
    );
    row(
        "dataset".into(),
        dataset_of(a).unwrap_or_default(),
        dataset_of(b).unwrap_or_default(),
    );
    let datasets = |r: &Release| {
        r.metadata
            .datasets
            .iter()
            .map(|d| {
                format!(
                    "{} {} ({})",
                    d.name,
                    d.digest.as_deref().unwrap_or("-"),
                    d.role.as_deref().unwrap_or("-")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    row("datasets".into(), datasets(a), datasets(b));
    let source = |r: &Release| {
        r.metadata
            .source
            .as_ref()
            .map(|s| s.uri.clone())
            .unwrap_or_default()
    };
    row("source".into(), source(a), source(b));
    let parents = |r: &Release| {
        r.metadata
            .parents
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    row("parents".into(), parents(a), parents(b));
    row(
        "input_schema".into(),
        opt(&ma.input_schema),
        opt(&mb.input_schema),
    );
    row(
        "output_schema".into(),
        opt(&ma.output_schema),
        opt(&mb.output_schema),
    );
    let framework = |r: &Release| {
        r.metadata
            .framework
            .as_ref()
            .map(|f| format!("{} {}", f.name, f.version))
            .unwrap_or_default()
    };
    row("framework".into(), framework(a), framework(b));
    row("owner".into(), opt(&ma.owner), opt(&mb.owner));
    for (section, xa, xb) in [
        ("hyperparameters", &ma.hyperparameters, &mb.hyperparameters),
        ("dependencies", &ma.dependencies, &mb.dependencies),
        ("tags", &ma.tags, &mb.tags),
    ] {
        let keys: BTreeSet<&String> = xa.keys().chain(xb.keys()).collect();
        for k in keys {
            row(
                format!("{section}.{k}"),
                xa.get(k).cloned().unwrap_or_default(),
                xb.get(k).cloned().unwrap_or_default(),
            );
        }
    }
    let keys: BTreeSet<&String> = ma.metrics.keys().chain(mb.metrics.keys()).collect();
    for k in keys {
        let (x, y) = (ma.metrics.get(k), mb.metrics.get(k));
        let shown_b = match (x, y) {
            (Some(x), Some(y)) if x != y => format!("{y} ({:+})", round(y - x)),
            (_, Some(y)) => y.to_string(),
            (_, None) => String::new(),
        };
        let (xs, ys) = (x.map(f64::to_string).unwrap_or_default(), shown_b);
        let differs = x != y;
        rows.push(DiffRow {
            field: format!("metrics.{k}"),
            a: xs,
            b: ys,
            differs,
        });
    }
    let variants = |r: &Release| {
        r.variants
            .iter()
            .map(|v| format!("{}/{} {}", v.target, v.accelerator, v.hash.short()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (va, vb) = (variants(a), variants(b));
    rows.push(DiffRow {
        field: "variants".into(),
        differs: va != vb,
        a: va,
        b: vb,
    });
    rows
}

/// `x` to 6 significant decimals, so float noise does not show in a difference.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// What a model card says besides the manifest.
#[derive(Clone, Debug, Default)]
pub struct CardContext {
    /// Lifecycle stage.
    pub stage: String,
    /// Aliases pointing at it.
    pub aliases: Vec<String>,
    /// Key id of the signer.
    pub signer: String,
    /// Devices running it.
    pub devices: usize,
}

/// A Markdown model card for `release`, from its signed metadata.
pub fn model_card(release: &Release, ctx: &CardContext) -> String {
    let m = &release.metadata;
    let mut out = String::new();
    let none = "not stated";
    let _ = writeln!(out, "# {} {}\n", release.name, release.version);
    if let Some(changelog) = &m.changelog {
        let _ = writeln!(out, "{changelog}\n");
    }
    let _ = writeln!(out, "| | |\n|---|---|");
    let mut field = |k: &str, v: String| {
        let _ = writeln!(
            out,
            "| {k} | {} |",
            v.replace('|', "\\|").replace('\n', " ")
        );
    };
    field("Stage", ctx.stage.clone());
    field(
        "Aliases",
        if ctx.aliases.is_empty() {
            "none".into()
        } else {
            ctx.aliases.join(", ")
        },
    );
    field("Owner", m.owner.clone().unwrap_or_else(|| none.into()));
    field("Built by", release.created_by.clone());
    field("Signed by", ctx.signer.clone());
    field("Devices running it", ctx.devices.to_string());
    let _ = writeln!(out, "\n## Intended use and interface\n");
    let _ = writeln!(
        out,
        "- Input schema: {}\n- Output schema: {}",
        m.input_schema.as_deref().unwrap_or(none),
        m.output_schema.as_deref().unwrap_or(none)
    );
    if let Some(f) = &m.framework {
        let _ = writeln!(out, "- Framework: {} {}", f.name, f.version);
    }
    if let Some(i) = &m.interface {
        let _ = writeln!(out, "- Interface ({}):", i.format);
        for (what, text) in [
            ("inputs", &i.inputs),
            ("outputs", &i.outputs),
            ("params", &i.params),
        ] {
            if let Some(text) = text {
                let _ = writeln!(
                    out,
                    "  - {what}: `{}`",
                    text.replace('`', "'").replace('\n', " ")
                );
            }
        }
    }
    for v in &release.variants {
        let kind = match v.kind {
            ArtifactKind::File => String::new(),
            ArtifactKind::Directory => format!(
                " (a directory, unpacked into {}/)",
                v.file_name.unpacked_dir().unwrap_or_default()
            ),
        };
        let _ = writeln!(
            out,
            "- Variant: {}{kind} on {} / {}, {} bytes, blake3 {}",
            v.file_name,
            v.target,
            v.accelerator,
            v.size,
            v.hash.short()
        );
    }
    let _ = writeln!(out, "\n## Training data and lineage\n");
    match &m.dataset {
        Some(d) => {
            let _ = writeln!(
                out,
                "- Dataset: {} version {}{}",
                d.id,
                d.version,
                d.hash
                    .as_deref()
                    .map(|h| format!(" (hash {h})"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(out, "- Dataset: {none}");
        }
    }
    for d in &m.datasets {
        let mut line = format!("- Dataset: {}", d.name);
        if let Some(role) = &d.role {
            let _ = write!(line, " ({role})");
        }
        if let Some(digest) = &d.digest {
            let _ = write!(line, ", digest {digest}");
        }
        if let Some(source) = &d.source {
            let _ = write!(line, ", from {source}");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "- Code commit: {}",
        m.code_commit.as_deref().unwrap_or(none)
    );
    if let Some(src) = &m.source {
        let _ = writeln!(out, "- Imported from {}: {}", src.registry, src.uri);
        let mut details = Vec::new();
        if let (Some(model), Some(version)) = (&src.model, &src.model_version) {
            details.push(format!("model {model} version {version}"));
        }
        if let Some(e) = &src.experiment {
            details.push(format!("experiment {e}"));
        }
        if let Some(run) = &src.run_id {
            details.push(format!(
                "run {run}{}",
                src.run_uri
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            ));
        }
        if !details.is_empty() {
            let _ = writeln!(out, "  - {}", details.join(", "));
        }
    }
    if !m.parents.is_empty() {
        let parents: Vec<String> = m.parents.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "- Derived from: {}", parents.join(", "));
    }
    if !m.hyperparameters.is_empty() {
        let _ = writeln!(out, "\n## Hyperparameters\n");
        for (k, v) in &m.hyperparameters {
            let _ = writeln!(out, "- {k}: {v}");
        }
    }
    let _ = writeln!(out, "\n## Evaluation\n");
    if m.metrics.is_empty() {
        let _ = writeln!(out, "No metrics were published with this release.");
    } else {
        let _ = writeln!(out, "| metric | value |\n|---|---|");
        for (k, v) in &m.metrics {
            let _ = writeln!(out, "| {k} | {v} |");
        }
    }
    if !m.dependencies.is_empty() {
        let _ = writeln!(out, "\n## Dependencies\n");
        for (k, v) in &m.dependencies {
            let _ = writeln!(out, "- {k} {v}");
        }
    }
    if !m.tags.is_empty() {
        let _ = writeln!(out, "\n## Tags\n");
        for (k, v) in &m.tags {
            let _ = writeln!(out, "- {k}: {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::manifest::{DatasetRef, Lineage};

    fn release(
        model: &str,
        version: &str,
        parents: &[&str],
        dataset: Option<(&str, &str)>,
    ) -> Release {
        let mut release = ferry_shared::testutil::release(model, version);
        release.metadata = Lineage {
            parents: parents.iter().map(|p| p.parse().unwrap()).collect(),
            dataset: dataset.map(|(id, v)| DatasetRef {
                id: id.into(),
                version: v.into(),
                hash: None,
            }),
            code_commit: Some(format!("c-{version}")),
            ..Lineage::default()
        };
        release
    }

    fn by_version(releases: Vec<Release>) -> BTreeMap<Version, Release> {
        releases
            .into_iter()
            .map(|r| (r.version.clone(), r))
            .collect()
    }

    #[test]
    fn ancestry_walks_parents_once_each_even_through_a_cycle() {
        let releases = by_version(vec![
            release("m", "1.0.0", &["1.1.0"], Some(("tx", "a"))),
            release("m", "1.1.0", &["1.0.0"], Some(("tx", "b"))),
            release("m", "2.0.0", &["1.1.0", "0.9.0"], Some(("tx", "c"))),
        ]);
        let walk = ancestry(&releases, &"2.0.0".parse().unwrap());
        let seen: Vec<(String, u32, bool)> = walk
            .iter()
            .map(|a| (a.version.to_string(), a.depth, a.published))
            .collect();
        assert_eq!(
            seen,
            [
                ("2.0.0".into(), 0, true),
                ("1.1.0".into(), 1, true),
                ("0.9.0".into(), 1, false),
                ("1.0.0".into(), 2, true),
            ]
        );
        assert_eq!(walk[1].dataset.as_deref(), Some("tx b"));
        assert_eq!(
            walk[3].child.as_ref().map(ToString::to_string).as_deref(),
            Some("1.1.0")
        );
    }

    #[test]
    fn what_a_dataset_reaches_directly_and_through_parents() {
        let mut all = BTreeMap::new();
        all.insert(
            "m".parse().unwrap(),
            by_version(vec![
                release("m", "1.0.0", &[], Some(("tx", "2024-01"))),
                release("m", "1.1.0", &["1.0.0"], None),
                release("m", "1.2.0", &["1.1.0"], Some(("other", "x"))),
                release("m", "2.0.0", &[], Some(("tx", "2024-02"))),
                release("m", "3.0.0", &[], None),
            ]),
        );
        let hit = |version: Option<&str>| -> Vec<String> {
            derived_from(&all, "tx", version)
                .iter()
                .map(|d| format!("{} {}", d.version, d.how))
                .collect()
        };
        assert_eq!(
            hit(None),
            [
                "1.0.0 trained on tx 2024-01",
                "1.1.0 derived from 1.0.0",
                "1.2.0 derived from 1.1.0",
                "2.0.0 trained on tx 2024-02",
            ]
        );
        assert_eq!(hit(Some("2024-02")), ["2.0.0 trained on tx 2024-02"]);
    }

    /// Releases imported from MLflow list their datasets (by name and digest, with a role)
    /// instead of the single `dataset`: impact queries and cards must see them too.
    #[test]
    fn listed_datasets_count_for_impact_diff_and_card() {
        use ferry_shared::manifest::{DatasetUse, Source};
        let mut imported = release("m", "4.0.0", &[], None);
        imported.metadata.datasets = vec![
            DatasetUse {
                name: "tx-2026-11".into(),
                digest: Some("afc96371".into()),
                source: Some("s3://data/tx.parquet".into()),
                role: Some("training".into()),
            },
            DatasetUse {
                name: "holdout".into(),
                digest: None,
                source: None,
                role: Some("eval".into()),
            },
        ];
        imported.metadata.source = Some(Source {
            registry: "mlflow".into(),
            uri: "http://mlflow/#/models/m/versions/4".into(),
            model: Some("m".into()),
            model_version: Some("4".into()),
            run_id: Some("r1".into()),
            run_uri: None,
            experiment: Some("fraud".into()),
        });
        imported.metadata.tags.insert("team".into(), "fraud".into());
        let child = release("m", "4.1.0", &["4.0.0"], None);
        let mut all = BTreeMap::new();
        all.insert(
            "m".parse().unwrap(),
            by_version(vec![imported.clone(), child]),
        );
        let hit = |id: &str, version: Option<&str>| -> Vec<String> {
            derived_from(&all, id, version)
                .iter()
                .map(|d| format!("{} {}", d.version, d.how))
                .collect()
        };
        assert_eq!(
            hit("tx-2026-11", None),
            [
                "4.0.0 training on tx-2026-11 afc96371",
                "4.1.0 derived from 4.0.0"
            ]
        );
        assert_eq!(hit("tx-2026-11", Some("afc96371")).len(), 2);
        assert!(hit("tx-2026-11", Some("other")).is_empty());
        assert_eq!(hit("holdout", None)[0], "4.0.0 eval on holdout (no digest)");

        let rows = diff(&release("m", "3.0.0", &[], None), &imported);
        let row = |f: &str| rows.iter().find(|r| r.field == f).unwrap();
        assert!(row("datasets").differs && row("source").differs);
        assert!(row("tags.team").differs);

        let card = model_card(&imported, &CardContext::default());
        for expected in [
            "Dataset: tx-2026-11 (training), digest afc96371, from s3://data/tx.parquet",
            "Dataset: holdout (eval)",
            "Imported from mlflow: http://mlflow/#/models/m/versions/4",
            "model m version 4, experiment fraud, run r1",
            "- team: fraud",
        ] {
            assert!(card.contains(expected), "{expected:?} not in:\n{card}");
        }
    }

    #[test]
    fn a_diff_shows_what_changed_and_metric_deltas() {
        let mut a = release("m", "1.0.0", &[], Some(("tx", "a")));
        let mut b = release("m", "1.1.0", &["1.0.0"], Some(("tx", "b")));
        a.metadata.metrics.insert("accuracy".into(), 0.9);
        b.metadata.metrics.insert("accuracy".into(), 0.925);
        b.metadata.metrics.insert("f1".into(), 0.8);
        let rows = diff(&a, &b);
        let row = |f: &str| rows.iter().find(|r| r.field == f).unwrap();
        assert!(row("dataset").differs);
        assert!(!row("owner").differs);
        assert_eq!(row("metrics.accuracy").b, "0.925 (+0.025)");
        assert_eq!(
            (row("metrics.f1").a.as_str(), row("metrics.f1").b.as_str()),
            ("", "0.8")
        );
        assert!(row("variants").differs);
    }

    #[test]
    fn a_model_card_carries_the_signed_metadata_and_escapes_tables() {
        let mut r = release("fraud", "1.2.0", &["1.1.0"], Some(("tx", "2024-01")));
        r.metadata.owner = Some("ml | fraud".into());
        r.metadata.metrics.insert("accuracy".into(), 0.967);
        let card = model_card(
            &r,
            &CardContext {
                stage: "production".into(),
                aliases: vec!["prod".into()],
                signer: "ab12".into(),
                devices: 3,
            },
        );
        assert!(card.starts_with("# fraud 1.2.0\n"));
        for line in [
            "| Stage | production |",
            "| Owner | ml \\| fraud |",
            "- Dataset: tx version 2024-01",
            "- Derived from: 1.1.0",
            "| accuracy | 0.967 |",
            "| Devices running it | 3 |",
        ] {
            assert!(card.contains(line), "{line}\n{card}");
        }
    }
}
