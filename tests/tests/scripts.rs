//! The project's own setup scripts (`scripts/`), run with fake system tools on `PATH`: what
//! they do when the system around them misbehaves.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// Writes an executable shell script `name` into `dir`.
fn fake(dir: &Path, name: &str, body: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// CI failed at `apt-get update` (exit 100): Debian's security mirror was mid-sync and served
/// an armhf index of another size than its Release file said, though every package the
/// scripts install was in the lists at hand. The update is now tried three times, and the
/// install then goes on; a package that is really missing still fails it.
#[test]
fn a_mirror_caught_mid_sync_does_not_stop_the_install() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("apt.log");
    let log_path = log.display();
    fake(
        dir.path(),
        "apt-get",
        &format!(
            "echo \"$*\" >> {log_path}\n\
             case \"$1\" in update) echo 'E: File has unexpected size. Mirror sync in progress?' >&2; exit 100;; esac\n\
             case \"$*\" in *ferry-missing*) exit 100;; esac"
        ),
    )?;
    fake(dir.path(), "dpkg", "exit 1")?;
    fake(dir.path(), "sudo", "exec \"$@\"")?;
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/cross-env.sh");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |package: &str| {
        Command::new("bash")
            .arg("-c")
            .arg(format!(". '{}' && apt_install {package}", lib.display()))
            .env("PATH", &path)
            .env("FERRY_APT_RETRY_PAUSE", "0")
            .output()
            .context("running bash")
    };
    let out = run("gcc-arm-linux-gnueabihf")?;
    let calls = std::fs::read_to_string(&log)?;
    ensure!(
        out.status.success(),
        "apt_install failed: {}\ncalls:\n{calls}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        calls.matches("update").count() == 3
            && calls.contains("install -y -q gcc-arm-linux-gnueabihf"),
        "apt-get was called as:\n{calls}"
    );
    let missing = run("ferry-missing")?;
    ensure!(
        !missing.status.success(),
        "installing a package apt cannot find succeeded"
    );
    Ok(())
}
