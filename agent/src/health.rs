//! The health check run after each switch: a command with a timeout. Exit status 0 in time
//! means healthy; anything else comes back with the tail of its stderr for the report.

use ferry_shared::{ModelName, Version};

use crate::config::HealthCheck;
pub use crate::program::Installed;

/// Runs the check against the version now current. `Err` holds the failure message.
pub async fn run(
    check: &HealthCheck,
    model: &ModelName,
    version: &Version,
    installed: &Installed,
) -> Result<(), String> {
    crate::program::run(
        "the health check",
        &check.command,
        check.timeout,
        model,
        version,
        installed,
    )
    .await
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
