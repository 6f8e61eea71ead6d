//! The model server's reload hook. After each switch, and after each rollback, the agent tells
//! the runtime that serves the model to load what `current` now names: it runs a command,
//! reloads or restarts a systemd unit, or calls an HTTP endpoint (Triton's
//! `POST /v2/repository/models/NAME/load`, or any URL), within a timeout. After a switch the
//! reload is part of the health check — a server that refuses the new version fails it, and
//! the device rolls back and reloads the previous one.
//!
//! `{model}`, `{version}`, `{dir}` (the `current` link), `{file}` (the artifact in it) and
//! `{unpacked}` (a directory artifact's tree; else the same as `{file}`) are replaced in the
//! command's arguments, the URL, the headers' values and the body; a command also sees the
//! `FERRY_*` variables the health check sees.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_shared::{ModelName, Version};

use crate::program::{self, Installed};

/// Longest an HTTP reload's answer is read, for the report.
const ANSWER_TAIL: u64 = 2048;

/// A configured reload hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadHook {
    /// What to do.
    pub action: ReloadAction,
    /// Longest it may take.
    pub timeout: Duration,
}

/// How the model server is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadAction {
    /// Run a program (exit status 0: reloaded).
    Command(Vec<String>),
    /// `systemctl VERB UNIT`.
    Unit {
        /// The unit (`triton.service`).
        unit: String,
        /// What systemd does with it.
        verb: UnitVerb,
    },
    /// An HTTP request (a 2xx answer: reloaded).
    Http(HttpCall),
}

/// What `systemctl` is asked to do to the serving unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitVerb {
    /// `systemctl reload` (the unit's ExecReload, often a SIGHUP).
    #[default]
    Reload,
    /// `systemctl restart`, for servers that load their model only at start.
    Restart,
    /// `systemctl try-reload-or-restart`.
    TryReloadOrRestart,
}

impl UnitVerb {
    fn as_str(self) -> &'static str {
        match self {
            UnitVerb::Reload => "reload",
            UnitVerb::Restart => "restart",
            UnitVerb::TryReloadOrRestart => "try-reload-or-restart",
        }
    }
}

/// An HTTP request that makes the server load the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    /// `POST`, `PUT` or `GET`.
    pub method: String,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Headers to send.
    pub headers: BTreeMap<String, String>,
    /// The body, if any (not with `GET`).
    pub body: Option<String>,
}

impl ReloadHook {
    /// Tells the server to load `version`, which `installed` describes. `Err` says why it did
    /// not, for the report.
    pub async fn run(
        &self,
        model: &ModelName,
        version: &Version,
        installed: &Installed,
    ) -> Result<(), String> {
        let fill = |text: &str| fill(text, model, version, installed);
        // What to do, with the placeholders filled in.
        enum Step {
            Run(Vec<String>),
            Call(HttpCall),
        }
        let step = match &self.action {
            ReloadAction::Command(argv) => Step::Run(argv.iter().map(|a| fill(a)).collect()),
            ReloadAction::Unit { unit, verb } => Step::Run(
                ["systemctl", verb.as_str(), unit.as_str()]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            ReloadAction::Http(call) => Step::Call(HttpCall {
                method: call.method.clone(),
                url: fill(&call.url),
                headers: call
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), fill(v)))
                    .collect(),
                body: call.body.as_deref().map(fill),
            }),
        };
        let result = match step {
            Step::Run(argv) => {
                program::run(
                    "the reload hook",
                    &argv,
                    self.timeout,
                    model,
                    version,
                    installed,
                )
                .await
            }
            Step::Call(call) => {
                let timeout = self.timeout;
                let request = tokio::task::spawn_blocking(move || http(&call, timeout));
                match tokio::time::timeout(self.timeout + Duration::from_secs(1), request).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(e)) => Err(format!("the reload request failed: {e}")),
                    Err(_) => Err(format!(
                        "the reload request did not finish within {}s",
                        self.timeout.as_secs()
                    )),
                }
            }
        };
        result.map_err(|e| format!("the model server did not load {model} {version}: {e}"))
    }
}

/// `text` with the placeholders replaced.
fn fill(text: &str, model: &ModelName, version: &Version, installed: &Installed) -> String {
    let unpacked = installed.unpacked.as_ref().unwrap_or(&installed.file);
    text.replace("{model}", model.as_str())
        .replace("{version}", &version.to_string())
        .replace("{dir}", &installed.dir.to_string_lossy())
        .replace("{file}", &installed.file.to_string_lossy())
        .replace("{unpacked}", &unpacked.to_string_lossy())
}

/// Makes the request; a 2xx answer is a reload.
fn http(call: &HttpCall, timeout: Duration) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("ferry-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(call.method.as_str())
        .uri(&call.url);
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    let sent = match &call.body {
        Some(body) => request
            .body(body.clone())
            .map_err(|e| e.to_string())
            .and_then(|r| agent.run(r).map_err(|e| e.to_string())),
        None => request
            .body(())
            .map_err(|e| e.to_string())
            .and_then(|r| agent.run(r).map_err(|e| e.to_string())),
    };
    let mut answer = sent.map_err(|e| format!("{} {}: {e}", call.method, call.url))?;
    let status = answer.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = answer
        .body_mut()
        .with_config()
        .limit(ANSWER_TAIL)
        .read_to_string()
        .unwrap_or_default();
    let text = text.trim();
    Err(if text.is_empty() {
        format!("{} {} answered HTTP {status}", call.method, call.url)
    } else {
        format!(
            "{} {} answered HTTP {status}: {text}",
            call.method, call.url
        )
    })
}

#[cfg(test)]
mod tests;
