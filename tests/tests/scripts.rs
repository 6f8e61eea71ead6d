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

/// A scratch `PATH` of fake system tools that log how they were called, for running
/// `scripts/lib/cross-env.sh` functions against.
struct Fakes {
    dir: tempfile::TempDir,
}

impl Fakes {
    /// `apt-get` fails `update` as a mirror mid-sync does and any install naming
    /// `ferry-missing`; `dpkg` knows no package and no foreign architecture. Both log.
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("calls.log");
        let log = log.display();
        fake(
            dir.path(),
            "apt-get",
            &format!(
                "echo \"apt-get $*\" >> {log}\n\
                 case \"$1\" in update) echo 'E: File has unexpected size. Mirror sync in progress?' >&2; exit 100;; esac\n\
                 case \"$*\" in *ferry-missing*) exit 100;; esac"
            ),
        )?;
        fake(
            dir.path(),
            "dpkg",
            &format!("echo \"dpkg $*\" >> {log}\nexit 1"),
        )?;
        fake(dir.path(), "sudo", "exec \"$@\"")?;
        Ok(Fakes { dir })
    }

    /// Runs `call` in bash with the library sourced and the fakes first on `PATH`.
    fn run(&self, call: &str) -> Result<std::process::Output> {
        let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/cross-env.sh");
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg("-c")
            .arg(format!(". '{}' && {call}", lib.display()))
            .env("PATH", &path)
            .env("FERRY_APT_RETRY_PAUSE", "0")
            .output()
            .context("running bash")
    }

    /// The calls logged so far, one per line.
    fn calls(&self) -> Result<String> {
        match std::fs::read_to_string(self.dir.path().join("calls.log")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            read => Ok(read?),
        }
    }
}

/// CI failed at `apt-get update` (exit 100): Debian's security mirror was mid-sync and served
/// an armhf index of another size than its Release file said, though every package the
/// scripts install was in the lists at hand. The update is now tried three times, and the
/// install then goes on; a package that is really missing still fails it.
#[test]
fn a_mirror_caught_mid_sync_does_not_stop_the_install() -> Result<()> {
    let fakes = Fakes::new()?;
    let out = fakes.run("apt_install gcc-arm-linux-gnueabihf")?;
    let calls = fakes.calls()?;
    ensure!(
        out.status.success(),
        "apt_install failed: {}\ncalls:\n{calls}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        calls.matches("apt-get update").count() == 3
            && calls.contains("install -y -q gcc-arm-linux-gnueabihf"),
        "apt-get was called as:\n{calls}"
    );
    let missing = fakes.run("apt_install ferry-missing")?;
    ensure!(
        !missing.status.success(),
        "installing a package apt cannot find succeeded"
    );
    Ok(())
}

/// CI then failed at the ARM install itself: with the armhf index of bookworm-security out of
/// step, apt dropped that whole suite, and the multiarch standard libraries
/// (`libstd-rust-web-dev:arm64` / `:armhf`, 1.96, only in security) and their LLVM could not
/// be installed, for days. The ARM targets now build their standard library from Debian's
/// `rust-web-src` (an `all` package, listed in the native index) and run on the cross gcc's
/// glibc: no foreign architecture is added, no foreign package asked for.
#[test]
fn arm_targets_need_no_foreign_architecture_index() -> Result<()> {
    let fakes = Fakes::new()?;
    let out = fakes.run("cross_setup aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf")?;
    let calls = fakes.calls()?;
    ensure!(
        out.status.success(),
        "cross_setup failed: {}\ncalls:\n{calls}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !calls.contains("--add-architecture"),
        "cross_setup added a foreign architecture:\n{calls}"
    );
    let install = calls
        .lines()
        .find(|line| line.contains(" install "))
        .with_context(|| format!("no apt-get install among:\n{calls}"))?;
    ensure!(
        install.contains("rust-web-src")
            && install.contains("gcc-aarch64-linux-gnu")
            && install.contains("gcc-arm-linux-gnueabihf"),
        "the ARM toolchain is not what was installed: {install}"
    );
    ensure!(
        !install.split_whitespace().any(|word| word.contains(':')),
        "a foreign architecture's package was asked for: {install}"
    );
    Ok(())
}
