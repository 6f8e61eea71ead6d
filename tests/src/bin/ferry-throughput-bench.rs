//! Full-file throughput on real processes, each figure beside its anchor from the same run:
//! - **download**: an artifact of `--mib` MiB of random bytes (nothing to compress, nothing to
//!   reuse) installed by an agent over QUIC on loopback, from `alias set` to the install
//!   verified, switched and confirmed; the anchor is `curl` fetching the same file from an
//!   HTTP server on loopback into a file, then an fsync. With `--rounds N`, rounds after the
//!   first are updates to new random bytes: the same download, after the coordinator has
//!   looked for deltas against the version the agent holds and found none;
//! - **where the agent's time went**: its staging stages (index, network, decode, write, fsync,
//!   verify), from its own records;
//! - **publish**: `ferryctl publish` of the same file into the coordinator's store, and of a
//!   file of f32 weights of the same size (which compress, where random bytes are found
//!   incompressible and stored at a fast level); the anchor is `zstd -T2` at the store's level
//!   on the same file.
//!
//! Not a test: nothing here asserts. `cargo run --release -p ferry-tests --bin
//! ferry-throughput-bench -- --mib 1024` (`--rounds N --download-only` repeats the download
//! beside its anchor and skips the publish table).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_shared::testutil::noise;
use ferry_tests::procfs::status_kib;
use ferry_tests::{Fleet, HEALTH_MAGIC};

const MIB: usize = 1024 * 1024;
const PATIENCE: Duration = Duration::from_secs(3600);

/// Download and publish throughput of a random artifact (and publish of f32 weights), beside
/// curl + fsync and zstd -T2.
/// Prints tables; asserts nothing.
#[derive(clap::Parser)]
#[command(name = "ferry-throughput-bench")]
struct Args {
    /// Size of the artifact, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=65536))]
    mib: u64,
    /// Downloads to measure, each of new random bytes beside its own curl + fsync: the first
    /// a first install, the others updates that share nothing with the version the agent
    /// holds (every chunk is fetched, after the coordinator finds no delta to send).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Measure downloads only: no publish table (its zstd anchors and the weights' publish).
    #[arg(long)]
    download_only: bool,
    #[command(flatten)]
    build: ferry_tests::BuildFlag,
}

/// One round's download beside its anchor.
struct Round {
    curl: Option<Duration>,
    install: Duration,
    transfer: ferry_agent::state::TransferStats,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    args.build.apply();
    let size = usize::try_from(args.mib)? * MIB;
    let work = tempfile::Builder::new()
        .prefix("ferry-throughput-")
        .tempdir()?;
    let artifact = work.path().join("artifact.bin");
    // The fleet's coordinator runs on the default configuration: its store level is the
    // anchor's.
    let store_level = ferry_coordinator::config::Config::default().compression_level;
    let fleet = Fleet::start(1, None)?;
    let mut rounds = Vec::new();
    // The first round's publish and its zstd anchor: the publish table's random-bytes row.
    let mut first_publish = None;
    for round in 0..args.rounds {
        // The demo agents' health check loads a model by its header; the rest is random, new
        // every round so nothing is reused.
        let mut bytes = HEALTH_MAGIC.to_vec();
        bytes.extend(noise(7 + u64::from(round), size - HEALTH_MAGIC.len()));
        std::fs::write(&artifact, &bytes).context("writing the artifact")?;
        let zstd = if args.download_only || round > 0 {
            None
        } else {
            zstd_t2(
                &artifact,
                &work.path().join("artifact.bin.zst"),
                store_level,
            )?
        };
        let curl = curl_and_fsync(&artifact, &work.path().join("curl.bin"))?;
        let version = format!("1.0.{round}");
        let start = Instant::now();
        fleet.publish(&version, &bytes)?;
        let publish = start.elapsed();
        first_publish.get_or_insert((zstd, publish));
        drop(bytes);
        let start = Instant::now();
        fleet.set_prod(&version, "throughput bench")?;
        fleet.wait_all_on(&version, PATIENCE)?;
        let install = start.elapsed();
        let transfer = fleet.agents[0].transfer_for(&version)?;
        rounds.push(Round {
            curl,
            install,
            transfer,
        });
    }
    let agent_peak = status_kib(fleet.agents[0].pid().context("agent not running")?, "VmHWM")?;

    let mib = args.mib as f64;
    let rate = |d: Duration| mib / d.as_secs_f64();
    println!("artifact: {} MiB of random bytes", args.mib);
    println!();
    println!("| download | time | MiB/s | × curl + fsync |");
    println!("|---|---:|---:|---:|");
    for (i, round) in rounds.iter().enumerate() {
        let label = match i {
            0 if rounds.len() == 1 => String::new(),
            0 => " (round 1, first install)".to_owned(),
            i => format!(" (round {}, update sharing nothing)", i + 1),
        };
        let install = round.install;
        let ratio = match round.curl {
            Some(curl) => {
                println!(
                    "| curl from HTTP on loopback, then fsync{label} | {:.2} s | {:.0} | 1.00 |",
                    curl.as_secs_f64(),
                    rate(curl)
                );
                format!("{:.2}", curl.as_secs_f64() / install.as_secs_f64())
            }
            None => "curl not installed".to_owned(),
        };
        println!(
            "| Ferry: alias set → installed, verified, confirmed{label} | {:.2} s | {:.0} | {ratio} |",
            install.as_secs_f64(),
            rate(install),
        );
        let staging = Duration::from_millis(round.transfer.duration_ms);
        println!(
            "| Ferry: the agent's staging alone{label} | {:.2} s | {:.0} | |",
            staging.as_secs_f64(),
            rate(staging)
        );
    }
    let last = rounds.last().context("no round ran")?;
    println!();
    println!(
        "agent peak RSS {:.1} MiB over all rounds; last round: {} chunks, {} bytes on the wire",
        agent_peak as f64 / 1024.0,
        last.transfer.chunks_fetched,
        last.transfer.bytes_on_wire
    );
    println!();
    ferry_tests::print_stages(&last.transfer.stages, last.transfer.duration_ms);
    if args.download_only {
        return Ok(());
    }
    // A publish of model weights too, which compress (random bytes are stored at a fast
    // level, found incompressible), beside zstd -T2 on the same file.
    let weights = ferry_tests::weights(8, size / 4);
    let weights_file = work.path().join("weights.safetensors");
    std::fs::write(&weights_file, &weights).context("writing the weights")?;
    let weights_zstd = zstd_t2(&weights_file, &work.path().join("weights.zst"), store_level)?;
    let start = Instant::now();
    fleet.publish("0.9.0", &weights)?;
    let weights_publish = start.elapsed();
    drop(weights);
    let (zstd, publish) = first_publish.context("no round ran")?;
    println!();
    println!("| publish | time | MiB/s | × zstd -T2 |");
    println!("|---|---:|---:|---:|");
    for (what, zstd, publish) in [
        ("random bytes", zstd, publish),
        ("f32 weights (safetensors)", weights_zstd, weights_publish),
    ] {
        let ratio = zstd.map_or_else(
            || "zstd not installed".to_owned(),
            |z| format!("{:.2}", z.as_secs_f64() / publish.as_secs_f64()),
        );
        if let Some(zstd) = zstd {
            println!(
                "| {what}: zstd -T2 -{store_level} | {:.2} s | {:.0} | 1.00 |",
                zstd.as_secs_f64(),
                rate(zstd)
            );
        }
        println!(
            "| {what}: ferryctl publish (level {store_level} store) | {:.2} s | {:.0} | {ratio} |",
            publish.as_secs_f64(),
            rate(publish),
        );
    }
    Ok(())
}

/// `zstd -T2` at `store_level` on `file`, or `None` without the CLI.
fn zstd_t2(file: &Path, out: &Path, store_level: i32) -> Result<Option<Duration>> {
    if !installed("zstd") {
        return Ok(None);
    }
    let start = Instant::now();
    let status = Command::new("zstd")
        .args(["-q", "-f", "-T2", &format!("-{store_level}")])
        .arg(file)
        .arg("-o")
        .arg(out)
        .status()
        .context("running zstd")?;
    let took = start.elapsed();
    if !status.success() {
        bail!("zstd failed: {status}");
    }
    std::fs::remove_file(out)?;
    Ok(Some(took))
}

/// Whether `tool --version` runs.
fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `curl` fetching `file` from an HTTP server on loopback into `out`, then an fsync of `out`;
/// `None` without the CLI.
fn curl_and_fsync(file: &Path, out: &Path) -> Result<Option<Duration>> {
    if !installed("curl") {
        return Ok(None);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/artifact.bin", listener.local_addr()?);
    let served = file.to_owned();
    let server = std::thread::spawn(move || serve_once(&listener, &served));
    let start = Instant::now();
    let status = Command::new("curl")
        .args(["-s", "-f", "-o"])
        .arg(out)
        .arg(&url)
        .status()
        .context("running curl")?;
    if !status.success() {
        bail!("curl failed: {status}");
    }
    std::fs::File::open(out)?.sync_all()?;
    let took = start.elapsed();
    match server.join() {
        Ok(result) => result?,
        Err(_) => bail!("the HTTP server thread panicked"),
    }
    if std::fs::metadata(out)?.len() != std::fs::metadata(file)?.len() {
        bail!("curl fetched a different length than served");
    }
    std::fs::remove_file(out)?;
    Ok(Some(took))
}

/// Answers one HTTP request on `listener` with `file` (the kernel copies it: `std::io::copy`
/// from a file to a socket is a sendfile).
fn serve_once(listener: &TcpListener, file: &Path) -> Result<()> {
    let (mut stream, _) = listener.accept()?;
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
        if request.len() > 64 * 1024 {
            bail!("an HTTP request over 64 KiB");
        }
    }
    let mut body = std::fs::File::open(file)?;
    let len = body.metadata()?.len();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    std::io::copy(&mut body, &mut stream)?;
    Ok(())
}
