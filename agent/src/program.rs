//! Programs the agent runs for a version (the health check, a reload hook): the operator's
//! command with `FERRY_*` variables saying where the version lies, bounded in time, its stderr
//! tail kept for the report.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use ferry_shared::variant_choice::DeviceProfile;
use ferry_shared::{ModelName, Version};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::slots::SlotLayout;

/// How much of the command's stderr a failure report carries.
const STDERR_TAIL: usize = 2048;

/// Where the version being checked lies, as the programs the agent runs see it.
#[derive(Clone, Debug)]
pub struct Installed {
    /// The model's `current` link (`FERRY_MODEL_DIR`).
    pub dir: PathBuf,
    /// The artifact file in it (`FERRY_MODEL_FILE`).
    pub file: PathBuf,
    /// For a directory artifact, the tree unpacked from it (`FERRY_MODEL_UNPACKED`).
    pub unpacked: Option<PathBuf>,
}

impl Installed {
    /// Where installed `version` of `model` lies, seen through the `current` link (as the
    /// programs run for it and the application see it).
    pub fn current(
        layout: &SlotLayout,
        model: &ModelName,
        version: &Version,
        profile: &DeviceProfile,
    ) -> Self {
        let dir = layout.current_link(model);
        let variant = crate::fetch::installed_variant(layout, model, version, profile);
        let name = variant
            .as_ref()
            .map(|v| v.file_name.to_string())
            .unwrap_or_default();
        Self {
            file: dir.join(name),
            unpacked: variant.and_then(|v| crate::unpack::unpacked_dir(&dir, &v)),
            dir,
        }
    }

    /// Sets the `FERRY_MODEL_*` variables that say where the version lies.
    pub fn describe(&self, command: &mut Command, model: &ModelName, version: &Version) {
        command
            .env("FERRY_MODEL", model.as_str())
            .env("FERRY_VERSION", version.to_string())
            .env("FERRY_MODEL_DIR", &self.dir)
            .env("FERRY_MODEL_FILE", &self.file);
        match &self.unpacked {
            Some(tree) => command.env("FERRY_MODEL_UNPACKED", tree),
            None => command.env_remove("FERRY_MODEL_UNPACKED"),
        };
    }
}

/// Runs `argv` for `version` and waits at most `timeout`; exit status 0 is `Ok`, anything
/// else an `Err` naming `what` ("the health check") with the stderr tail.
pub async fn run(
    what: &str,
    argv: &[String],
    timeout: Duration,
    model: &ModelName,
    version: &Version,
    installed: &Installed,
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err(format!("{what} has no command"));
    };
    let mut command = Command::new(program);
    installed.describe(&mut command, model, version);
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {what} `{program}`: {e}"))?;
    let mut stderr = child.stderr.take();
    let collect = async {
        let mut tail = Vec::new();
        if let Some(err) = stderr.as_mut() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL);
                tail.drain(..excess);
            }
        }
        tail
    };
    let outcome = tokio::time::timeout(timeout, async {
        let (tail, status) = tokio::join!(collect, child.wait());
        (tail, status)
    })
    .await;
    match outcome {
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "{what} did not finish within {}s",
                timeout.as_secs()
            ))
        }
        Ok((_, Err(e))) => Err(format!("{what} could not be awaited: {e}")),
        Ok((_, Ok(status))) if status.success() => Ok(()),
        Ok((tail, Ok(status))) => {
            let text = String::from_utf8_lossy(&tail).trim().to_owned();
            // 127 and 126 are how a shell, or an emulator's exec, says the program could not
            // be started at all: said in words, not left as a bare number.
            let code = match status.code() {
                None => "a signal".to_owned(),
                Some(127) => "status 127: cannot start, command not found".to_owned(),
                Some(126) => "status 126: cannot start, not executable".to_owned(),
                Some(c) => format!("status {c}"),
            };
            if text.is_empty() {
                Err(format!("exited with {code}"))
            } else {
                Err(format!("{text} (exited with {code})"))
            }
        }
    }
}
