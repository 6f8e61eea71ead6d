//! What an offline bundle weighs, on a real coordinator: a pair of versions is published,
//! and beside the bundle made for devices on the old version stand, in the same run, the
//! whole bundle (every chunk), the new file compressed whole with zstd -19, and what a
//! network update from the old version moves (an agent's own records).
//!
//! Not a test: nothing here asserts. With the silero-vad 6.0.0 → 6.2.0 pair fetched by
//! `ferry-transfer-bench --only "silero 6.0" --ferry-only` into `target/bench-pairs/`:
//! `cargo run --release -p ferry-tests --bin ferry-bundle-bench -- --build`; or any pair
//! with `--old FILE --new FILE`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_tests::{AgentSpec, Fleet, HEALTH_MAGIC, wait_until};

const PATIENCE: Duration = Duration::from_secs(1800);

/// Offline bundle sizes against a network update and whole-file zstd, on a version pair.
/// Prints a table; asserts nothing.
#[derive(clap::Parser)]
#[command(name = "ferry-bundle-bench")]
struct Args {
    /// The old version's file [default: silero-vad 6.0.0's model, from target/bench-pairs].
    #[arg(long, requires = "new")]
    old: Option<PathBuf>,
    /// The new version's file [default: silero-vad 6.2.0's model].
    #[arg(long, requires = "old")]
    new: Option<PathBuf>,
    #[command(flatten)]
    build: ferry_tests::BuildFlag,
}

/// The bytes of `path`, behind the magic the test agents' health check looks for (the same
/// prefix on both versions: the pair's difference is unchanged).
fn version(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = HEALTH_MAGIC.to_vec();
    bytes.extend(std::fs::read(path).with_context(|| {
        format!(
            "cannot read {} (fetch the pair first: cargo run --release -p ferry-tests --bin ferry-transfer-bench -- --only \"silero 6.0\" --ferry-only)",
            path.display()
        )
    })?);
    Ok(bytes)
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    args.build.apply();
    let pairs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-pairs");
    let (old_path, new_path) = match (args.old, args.new) {
        (Some(old), Some(new)) => (old, new),
        _ => (
            pairs.join("silero-vad-6.0.0/member.bin"),
            pairs.join("silero-vad-6.2.0/member.bin"),
        ),
    };
    let (old, new) = (version(&old_path)?, version(&new_path)?);
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec::named("network"))?;
    fleet.publish("1.0.0", &old)?;
    fleet.set_prod("1.0.0", "bundle bench")?;
    wait_until("the agent on 1.0.0", PATIENCE, || {
        let agent = &fleet.agents[0];
        Ok(agent.current().is_some() && !agent.in_probation())
    })?;
    fleet.publish("2.0.0", &new)?;
    let bundle = |name: &str, extra: &[&str]| -> Result<u64> {
        let out = fleet.dir.join(name);
        let path = out.to_string_lossy().into_owned();
        let mut all = vec![
            "bundle",
            "create",
            ferry_tests::MODEL,
            "2.0.0",
            "--output",
            &path,
        ];
        all.extend(extra);
        fleet.coordinator.ctl(&all)?;
        Ok(std::fs::metadata(&out)?.len())
    };
    let for_old = bundle("for-old.fbundle", &["--for-version", "1.0.0"])?;
    let whole = bundle("whole.fbundle", &[])?;
    fleet.set_prod("2.0.0", "bundle bench")?;
    let network = fleet.agents[0].transfer_for("2.0.0")?.bytes_on_wire;
    let zstd = zstd::bulk::compress(&new, 19)?.len() as u64;
    if new.is_empty() {
        bail!("the new version is empty");
    }
    println!(
        "pair: {} ({} bytes) -> {} ({} bytes)",
        old_path.display(),
        old.len(),
        new_path.display(),
        new.len()
    );
    println!();
    println!("| what | bytes | % of new |");
    println!("|---|---:|---:|");
    let row = |what: &str, bytes: u64| {
        println!(
            "| {what} | {bytes} | {:.1} % |",
            bytes as f64 * 100.0 / new.len() as f64
        );
    };
    row("bundle `--for-version` old", for_old);
    row(
        "network update from old (anchor: bytes on the wire)",
        network,
    );
    row("bundle, every chunk", whole);
    row("new file, zstd -19 (anchor)", zstd);
    Ok(())
}
