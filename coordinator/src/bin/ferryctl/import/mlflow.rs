//! A small client of an MLflow tracking server's REST API (2.0 paths, as MLflow 2.x and 3.x
//! serve them): model versions, runs, experiments, and the artifacts the server proxies
//! (`mlflow-artifacts:` URIs). Authenticates as the MLflow client does, from
//! `MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

/// Most files a model's artifacts may hold.
const MAX_FILES: usize = 100_000;
/// Most versions of one registered model read (for parents and the newest version).
const MAX_VERSIONS: usize = 100_000;
/// Largest API answer read (artifacts are streamed, not bounded by this).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// A registered model version, as `model-versions/get` describes it.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ModelVersion {
    pub(crate) name: String,
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) run_id: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) tags: Vec<KeyValue>,
}

/// A key and its value (tags, params).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct KeyValue {
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) value: String,
}

/// A metric's latest value.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Metric {
    pub(crate) key: String,
    /// Protobuf's JSON writes a non-finite double as text (`"NaN"`, `"Infinity"`).
    #[serde(deserialize_with = "number_or_text")]
    pub(crate) value: f64,
}

fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(f64),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::Number(n) => n,
        Either::Text(t) => match t.as_str() {
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or(f64::NAN),
        },
    })
}

/// A training run.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Run {
    pub(crate) info: RunInfo,
    #[serde(default)]
    pub(crate) data: RunData,
    #[serde(default)]
    pub(crate) inputs: RunInputs,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RunInfo {
    pub(crate) run_id: String,
    pub(crate) experiment_id: String,
    #[serde(default)]
    pub(crate) user_id: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct RunData {
    #[serde(default)]
    pub(crate) metrics: Vec<Metric>,
    #[serde(default)]
    pub(crate) params: Vec<KeyValue>,
    #[serde(default)]
    pub(crate) tags: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct RunInputs {
    #[serde(default)]
    pub(crate) dataset_inputs: Vec<DatasetInput>,
}

/// A dataset a run consumed, with its context tag (`mlflow.data.context`).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct DatasetInput {
    #[serde(default)]
    pub(crate) tags: Vec<KeyValue>,
    pub(crate) dataset: Dataset,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Dataset {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) digest: String,
    /// JSON text whose shape depends on `source_type` (`{"uri": …}` for most).
    #[serde(default)]
    pub(crate) source: String,
}

/// An experiment.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Experiment {
    pub(crate) name: String,
}

/// The parts of a model's `MLmodel` file an import reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct MlModel {
    #[serde(default)]
    pub(crate) flavors: BTreeMap<String, serde_norway::Value>,
    pub(crate) signature: Option<MlSignature>,
    pub(crate) mlflow_version: Option<String>,
}

/// The model signature: JSON texts.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct MlSignature {
    pub(crate) inputs: Option<String>,
    pub(crate) outputs: Option<String>,
    pub(crate) params: Option<String>,
}

#[derive(Deserialize)]
struct ArtifactList {
    #[serde(default)]
    files: Vec<ArtifactFile>,
}

#[derive(Deserialize)]
struct ArtifactFile {
    path: String,
    #[serde(default)]
    is_dir: bool,
}

/// MLflow's error body.
#[derive(Deserialize)]
struct MlflowError {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// A tracking server.
pub(crate) struct Mlflow {
    /// Its base URL, without a trailing `/`.
    pub(crate) base: String,
    http: reqwest::Client,
    auth: Auth,
}

/// How requests authenticate, as the MLflow client's environment says.
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

impl Mlflow {
    pub(crate) fn new(tracking_uri: &str) -> Result<Self> {
        let base = tracking_uri.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--tracking-uri {tracking_uri}: an MLflow tracking server's http:// or https:// URL \
                 (a local mlruns directory is not read; run `mlflow server` on it)"
            );
        }
        let auth = match (
            std::env::var("MLFLOW_TRACKING_TOKEN").ok(),
            std::env::var("MLFLOW_TRACKING_USERNAME").ok(),
        ) {
            (Some(token), _) => Auth::Bearer(token),
            (None, Some(user)) => Auth::Basic(
                user,
                std::env::var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default(),
            ),
            (None, None) => Auth::None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { base, http, auth })
    }

    /// A GET of `url` with the server's credentials.
    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(url);
        match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let url = format!("{}/api/2.0/{path}", self.base);
        let response = self
            .request(&url)
            .query(query)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .with_context(|| format!("cannot reach the MLflow server at {}", self.base))?;
        let status = response.status();
        let body = read_bounded(response).await?;
        if !status.is_success() {
            let said = serde_json::from_slice::<MlflowError>(&body)
                .map(|e| format!("{}: {}", e.error_code, e.message))
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(300).collect());
            bail!("MLflow {path}: {status}: {said}");
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("MLflow {path}: an answer this client does not understand"))
    }

    /// A model version by number.
    pub(crate) async fn model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let a: Answer = self
            .get(
                "mlflow/model-versions/get",
                &[("name", name), ("version", version)],
            )
            .await?;
        Ok(a.model_version)
    }

    /// The version an alias points at.
    pub(crate) async fn by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let a: Answer = self
            .get(
                "mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await?;
        Ok(a.model_version)
    }

    /// Every version of a registered model.
    pub(crate) async fn versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
            next_page_token: Option<String>,
        }
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let mut all = Vec::new();
        let mut token = None::<String>;
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let a: Answer = self.get("mlflow/model-versions/search", &query).await?;
            all.extend(a.model_versions);
            match a.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) if all.len() < MAX_VERSIONS => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    pub(crate) async fn run(&self, run_id: &str) -> Result<Run> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let a: Answer = self.get("mlflow/runs/get", &[("run_id", run_id)]).await?;
        Ok(a.run)
    }

    pub(crate) async fn experiment(&self, id: &str) -> Result<Experiment> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let a: Answer = self
            .get("mlflow/experiments/get", &[("experiment_id", id)])
            .await?;
        Ok(a.experiment)
    }

    /// Where the version's files are (`mlflow-artifacts:/…`, `s3://…`, …).
    pub(crate) async fn download_uri(&self, name: &str, version: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Answer {
            artifact_uri: String,
        }
        let a: Answer = self
            .get(
                "mlflow/model-versions/get-download-uri",
                &[("name", name), ("version", version)],
            )
            .await?;
        Ok(a.artifact_uri)
    }

    /// Downloads the tree at `artifact_uri` (which the server must proxy: `mlflow-artifacts:`)
    /// into `into`; returns the files and bytes written.
    pub(crate) async fn download_tree(
        &self,
        artifact_uri: &str,
        into: &Path,
    ) -> Result<(u64, u64)> {
        let Some(root) = artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .map(|p| p.trim_start_matches('/').trim_end_matches('/').to_owned())
        else {
            bail!(
                "the model's files are at {artifact_uri}, which the tracking server does not \
                 serve; run `mlflow server` with artifact proxying (the default, \
                 --artifacts-destination) so ferryctl can fetch them"
            );
        };
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut pending = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let listed = if dir.is_empty() {
                root.clone()
            } else {
                format!("{root}/{dir}")
            };
            let list: ArtifactList = self
                .get("mlflow-artifacts/artifacts", &[("path", &listed)])
                .await?;
            for entry in list.files {
                // Entries come back relative to the root; a peer's paths are checked before
                // they touch the disk.
                let name = entry.path.rsplit('/').next().unwrap_or_default();
                let rel = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                let path = ferry_shared::archive::plain_relative(&rel)
                    .map_err(|why| anyhow::anyhow!("MLflow artifact {rel:?}: {why}"))?;
                files += 1;
                if files as usize > MAX_FILES {
                    bail!("the model has more than {MAX_FILES} files");
                }
                if entry.is_dir {
                    tokio::fs::create_dir_all(into.join(&path)).await?;
                    pending.push(rel);
                } else {
                    bytes += self
                        .download(&format!("{root}/{rel}"), &into.join(&path))
                        .await?;
                }
            }
        }
        Ok((files, bytes))
    }

    async fn download(&self, remote: &str, to: &Path) -> Result<u64> {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            remote
                .split('/')
                .map(crate::client::escape)
                .collect::<Vec<_>>()
                .join("/")
        );
        let response = self
            .request(&url)
            .send()
            .await
            .with_context(|| format!("cannot download {remote}"))?;
        if !response.status().is_success() {
            bail!("MLflow artifact {remote}: {}", response.status());
        }
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .with_context(|| format!("cannot write {}", to.display()))?;
        let mut stream = response.bytes_stream();
        let mut written = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece.with_context(|| format!("downloading {remote}"))?;
            file.write_all(&piece)
                .await
                .with_context(|| format!("cannot write {}", to.display()))?;
            written += piece.len() as u64;
        }
        file.sync_all().await?;
        Ok(written)
    }
}

async fn read_bounded(response: reqwest::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        body.extend_from_slice(&piece?);
        if body.len() > MAX_ANSWER_BYTES {
            bail!("an MLflow answer larger than {MAX_ANSWER_BYTES} bytes");
        }
    }
    Ok(body)
}
