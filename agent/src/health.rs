//! The health check run after each switch: a command with a timeout. Exit status 0 in time
//! means healthy; anything else comes back with the tail of its stderr for the report.

use std::path::PathBuf;
use std::process::Stdio;

use ferry_shared::{ModelName, Version};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::config::HealthCheck;

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

/// Runs the check against the version now current. `Err` holds the failure message.
pub async fn run(
    check: &HealthCheck,
    model: &ModelName,
    version: &Version,
    installed: &Installed,
) -> Result<(), String> {
    let Some((program, args)) = check.command.split_first() else {
        return Err("the health check has no command".into());
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
        .map_err(|e| format!("cannot start the health check `{program}`: {e}"))?;
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
    let outcome = tokio::time::timeout(check.timeout, async {
        let (tail, status) = tokio::join!(collect, child.wait());
        (tail, status)
    })
    .await;
    match outcome {
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "the health check did not finish within {}s",
                check.timeout.as_secs()
            ))
        }
        Ok((_, Err(e))) => Err(format!("the health check could not be awaited: {e}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(script: &str, timeout_ms: u64) -> HealthCheck {
        HealthCheck {
            command: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    async fn run_check(c: &HealthCheck) -> Result<(), String> {
        run(
            c,
            &"m".parse().unwrap(),
            &"1.0.0".parse().unwrap(),
            &at("/tmp", "/tmp/x", Some("/tmp/x-tree")),
        )
        .await
    }

    fn at(dir: &str, file: &str, unpacked: Option<&str>) -> Installed {
        Installed {
            dir: dir.into(),
            file: file.into(),
            unpacked: unpacked.map(Into::into),
        }
    }

    #[tokio::test]
    async fn the_check_is_told_where_the_version_and_its_unpacked_tree_lie() {
        let script = "test \"$FERRY_MODEL_DIR:$FERRY_MODEL_FILE:$FERRY_MODEL_UNPACKED\" = /tmp:/tmp/x:/tmp/x-tree";
        assert_eq!(run_check(&check(script, 5000)).await, Ok(()));
        let file_only = run(
            &check("test -z \"${FERRY_MODEL_UNPACKED+set}\"", 5000),
            &"m".parse().unwrap(),
            &"1.0.0".parse().unwrap(),
            &at("/tmp", "/tmp/x", None),
        )
        .await;
        assert_eq!(file_only, Ok(()), "a file artifact has no unpacked tree");
    }

    #[tokio::test]
    async fn passes_fails_with_stderr_and_times_out() {
        assert_eq!(
            run_check(&check("test \"$FERRY_VERSION\" = 1.0.0", 5000)).await,
            Ok(())
        );
        let err = run_check(&check("echo 'model failed to load' >&2; exit 3", 5000))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("model failed to load") && err.contains("status 3"),
            "{err}"
        );
        let err = run_check(&check("sleep 5", 100)).await.unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        let err = run(
            &HealthCheck {
                command: vec!["/nonexistent/check".into()],
                timeout: Duration::from_secs(1),
            },
            &"m".parse().unwrap(),
            &"1.0.0".parse().unwrap(),
            &at("/", "/", None),
        )
        .await
        .unwrap_err();
        // Natively the spawn itself fails; under qemu-user the emulated exec fails in the
        // child, which exits 127. Either way the report says it could not start.
        assert!(err.contains("cannot start"), "{err}");
        let err = run_check(&check("/nonexistent/check", 5000))
            .await
            .unwrap_err();
        assert!(err.contains("cannot start, command not found"), "{err}");
    }
}
