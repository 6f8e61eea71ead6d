//! The admin API client: where the coordinator is and how to authenticate, from flags, the
//! environment (`FERRY_URL`, `FERRY_TOKEN`) or a config file, in that order of precedence.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ferry_coordinator::api::ACTOR_HEADER;
use ferry_coordinator::api::ApiError;
use ferry_shared::fingerprint::normalize_fingerprint;
use ferry_shared::pinned::{PinnedCert, https_client_config};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exit::{ApiFailure, Unreachable, Usage};

const DEFAULT_URL: &str = "http://127.0.0.1:7401";
const DEFAULT_TOKEN_FILE: &str = "./ferry-data/admin.token";

/// The help heading the connection flags stand under, apart from each command's own options.
const CONNECTION: &str = "Connection (any command)";

/// Connection flags shared by every command.
#[derive(Args)]
pub(crate) struct ConnectionArgs {
    /// Admin API URL, http:// or https:// [default: http://127.0.0.1:7401]
    #[arg(long, global = true, env = "FERRY_URL", hide_env_values = true, help_heading = CONNECTION)]
    url: Option<String>,
    /// API token (of any role; the coordinator decides what it may do)
    #[arg(long, global = true, env = "FERRY_TOKEN", hide_env_values = true, help_heading = CONNECTION)]
    token: Option<String>,
    /// File holding the API token [default: ./ferry-data/admin.token]
    #[arg(long, global = true, help_heading = CONNECTION)]
    token_file: Option<PathBuf>,
    /// ferryctl config file (TOML: url, token or token_file)
    /// [default: ~/.config/ferry/ferryctl.toml when it exists]
    #[arg(long, global = true, env = "FERRY_CONFIG", hide_env_values = true, help_heading = CONNECTION)]
    config: Option<PathBuf>,
    /// Who you are, for the audit trail [default: $USER]
    #[arg(long = "as", global = true, help_heading = CONNECTION)]
    actor: Option<String>,
    /// With an https:// URL: trust only the certificate with this SHA-256 fingerprint (the
    /// coordinator prints it at start; agents pin the same one) [default: the system's CAs]
    #[arg(long, global = true, env = "FERRY_PIN", hide_env_values = true, help_heading = CONNECTION)]
    pin: Option<String>,
    /// With an https:// URL: also trust the CA certificates in this PEM file
    #[arg(long, global = true, help_heading = CONNECTION)]
    ca_cert: Option<PathBuf>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    pin: Option<String>,
    ca_cert: Option<PathBuf>,
}

/// An authenticated admin API client.
pub(crate) struct Client {
    http: reqwest::Client,
    /// The pinned-certificate verifier, to say which certificate a refused server showed.
    pinned: Option<Arc<PinnedCert>>,
    base: String,
    token: String,
    actor: String,
}

fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token from {}", path.display()))?;
    Ok(text.trim().to_owned())
}

impl Client {
    /// Resolves the settings and builds the client.
    pub(crate) fn connect(args: &ConnectionArgs) -> Result<Self> {
        let file = Self::file_config(args.config.as_deref())?;
        let base = args
            .url
            .clone()
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.into())
            .trim_end_matches('/')
            .to_owned();
        check_url(&base)?;
        let token = match (&args.token, &args.token_file, file.token, file.token_file) {
            (Some(t), _, _, _) => t.clone(),
            (None, Some(path), _, _) => read_token(path)?,
            (None, None, Some(t), _) => t,
            (None, None, None, Some(path)) => read_token(&path)?,
            (None, None, None, None) => read_token(Path::new(DEFAULT_TOKEN_FILE)).context(
                "no API token: pass --token, --token-file, set FERRY_TOKEN, or run where ./ferry-data is",
            )?,
        };
        let actor = args
            .actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default();
        let pin = args.pin.clone().or(file.pin);
        let ca_cert = args.ca_cert.clone().or(file.ca_cert);
        let (http, pinned) = http_client(&base, pin.as_deref(), ca_cert.as_deref())?;
        Ok(Self {
            http,
            pinned,
            base,
            token,
            actor,
        })
    }

    fn file_config(explicit: Option<&Path>) -> Result<FileConfig> {
        let path = match explicit {
            Some(p) => p.to_owned(),
            None => match std::env::var_os("HOME") {
                Some(home) => {
                    let p = PathBuf::from(home).join(".config/ferry/ferryctl.toml");
                    if !p.exists() {
                        return Ok(FileConfig::default());
                    }
                    p
                }
                None => return Ok(FileConfig::default()),
            },
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .header(ACTOR_HEADER, &self.actor)
    }

    /// True when the last connection failed because the server showed another certificate
    /// than the pinned one (trying again cannot help).
    pub(crate) fn certificate_refused(&self) -> bool {
        self.pinned
            .as_ref()
            .is_some_and(|p| p.last_mismatch().is_some())
    }

    /// Sends a request; an error says the coordinator could not be reached.
    pub(crate) async fn dispatch(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        builder.send().await.map_err(|e| {
            let refused = self.pinned.as_ref().and_then(|p| {
                p.last_mismatch().map(|shown| {
                    format!("it showed certificate {shown}, not the pinned {}", p.pin())
                })
            });
            let e = anyhow::Error::new(e);
            let e = match refused {
                Some(why) => e.context(why),
                None => e,
            };
            e.context(Unreachable {
                base: self.base.clone(),
            })
        })
    }

    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T> {
        let response = self.dispatch(builder).await?;
        let response = succeeded(response).await?;
        response
            .json()
            .await
            .context("unreadable answer from the coordinator")
    }

    /// DELETE, expecting no body back.
    pub(crate) async fn delete(&self, path: &str) -> Result<()> {
        let response = self
            .dispatch(self.request(reqwest::Method::DELETE, path))
            .await?;
        succeeded(response).await.map(drop)
    }

    /// DELETE with a JSON body (a reason), expecting no body back.
    pub(crate) async fn delete_json<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        let response = self
            .dispatch(self.request(reqwest::Method::DELETE, path).json(body))
            .await?;
        succeeded(response).await.map(drop)
    }

    /// GET a JSON document.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// GET raw bytes (a signed envelope).
    pub(crate) async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let response = self
            .dispatch(self.request(reqwest::Method::GET, path))
            .await?;
        let bytes = succeeded(response).await?.bytes().await?;
        Ok(bytes.to_vec())
    }

    /// GET, the response to read as it comes (a bundle); an error answer is an error.
    pub(crate) async fn get_streamed(&self, path: &str) -> Result<reqwest::Response> {
        let response = self
            .dispatch(self.request(reqwest::Method::GET, path))
            .await?;
        succeeded(response).await
    }

    /// GET a JSON document; `None` on 404.
    pub(crate) async fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let response = self
            .dispatch(self.request(reqwest::Method::GET, path))
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = succeeded(response).await?;
        Ok(Some(
            response
                .json()
                .await
                .context("unreadable answer from the coordinator")?,
        ))
    }

    /// PUT a JSON body.
    pub(crate) async fn put_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }

    /// POST a JSON body and read the JSON answer.
    pub(crate) async fn post_for<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// POST a JSON body and read the JSON answer, also when it is a refusal with `refused`
    /// status (whose body says what was refused); returns whether it was refused.
    pub(crate) async fn post_judged<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        refused: reqwest::StatusCode,
    ) -> Result<(T, bool)> {
        let response = self
            .dispatch(self.request(reqwest::Method::POST, path).json(body))
            .await?;
        if response.status() != refused {
            let answer = succeeded(response)
                .await?
                .json()
                .await
                .context("unreadable answer from the coordinator")?;
            return Ok((answer, false));
        }
        // The same status also carries plain refusals (`{"error": …}`).
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match serde_json::from_str(&body) {
            Ok(answer) => Ok((answer, true)),
            Err(_) => Err(failure(status, body).into()),
        }
    }

    /// POST a JSON body, ignoring the answer's body.
    pub(crate) async fn post_json<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<reqwest::StatusCode> {
        let response = self
            .dispatch(self.request(reqwest::Method::POST, path).json(body))
            .await?;
        Ok(succeeded(response).await?.status())
    }

    /// POST raw bytes.
    pub(crate) async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body),
        )
        .await
    }
}

/// `text` as one URL path segment or query value (RFC 3986 unreserved bytes kept).
pub(crate) fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The response when it succeeded, else an error carrying the coordinator's message.
async fn succeeded(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(failure(status, body).into())
}

/// The failure an error answer describes: its `{"error": …}` message, else its whole body.
fn failure(status: reqwest::StatusCode, body: String) -> ApiFailure {
    let message = serde_json::from_str::<ApiError>(&body)
        .map(|e| e.error)
        .unwrap_or(body);
    ApiFailure { status, message }
}

/// How long ferryctl waits to connect (TCP and TLS) before calling the coordinator unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client for `base`: over https, trusting the pinned certificate only when `pin` is
/// given, else the system's CAs plus those in `ca_cert`.
fn http_client(
    base: &str,
    pin: Option<&str>,
    ca_cert: Option<&Path>,
) -> Result<(reqwest::Client, Option<Arc<PinnedCert>>)> {
    let https = base.starts_with("https://");
    let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    if !https && (pin.is_some() || ca_cert.is_some()) {
        return Err(Usage(format!(
            "--pin and --ca-cert need an https:// URL, and {base} is plain http"
        ))
        .into());
    }
    let (builder, pinned) = match (pin, ca_cert) {
        (Some(_), Some(_)) => {
            return Err(Usage("give --pin or --ca-cert, not both".into()).into());
        }
        (Some(pin), None) => {
            let pin = normalize_fingerprint(pin).ok_or_else(|| {
                Usage(format!(
                    "--pin {pin:?} is not a SHA-256 fingerprint (sha256:<64 hex digits>)"
                ))
            })?;
            let (tls, verifier) = https_client_config(&pin).context("TLS is unavailable")?;
            (builder.use_preconfigured_tls(tls), Some(verifier))
        }
        (None, Some(path)) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut builder = builder;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
            (builder, None)
        }
        (None, None) => (builder, None),
    };
    Ok((builder.build().context("cannot set up HTTPS")?, pinned))
}

/// Refuses a URL reqwest would misread: no scheme ("relative URL without a base"), a scheme
/// other than http or https, or no host.
fn check_url(base: &str) -> Result<(), Usage> {
    let usage = |why: &str| {
        Usage(format!(
            "--url {base:?} {why}: write it as https://HOST:PORT (or http://HOST:PORT for a coordinator on loopback)"
        ))
    };
    if !base.contains("://") {
        return Err(usage("has no scheme"));
    }
    let url = reqwest::Url::parse(base).map_err(|e| usage(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage("is neither http nor https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(usage("names no host"));
    }
    Ok(())
}
