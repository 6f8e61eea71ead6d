//! `ferry-transfer-bench`: bytes on the wire and encode/apply time for Ferry's chunked delta
//! transfer against whole-file tools, on real artifact pairs. Prints a table; asserts nothing.
//!
//! Pairs, fetched from PyPI with `pip download` into `target/bench-pairs/` on first run:
//! * native shared libraries: `libonnxruntime.so` from onnxruntime 1.30.0 → 1.31.1 (C++),
//!   numpy's `_multiarray_umath` 2.2.5 → 2.2.6 (C, gcc), `tokenizers.abi3.so` 0.21.0 → 0.21.1
//!   (Rust) and `lib_lightgbm.so` 4.5.0 → 4.6.0 (C++ with OpenMP);
//! * retrained ONNX models: `silero_vad.onnx` from silero-vad 5.1 → 6.0 and 6.0.0 → 6.2.0;
//! * the 6.0.0 → 6.2.0 pair quantized as it would ship to edge runtimes: int8 ONNX
//!   (onnxruntime's quantizer) and Q8_0 GGUF (gguf-py), made by `tests/bench/quantized_pair.py`
//!   in the bench's virtual environment (see `quantized`);
//! * a generated fine-tuned model, safetensors, 256 MiB (`--model-mib N` to change), once in
//!   bf16 and once in f32: half the tensors unchanged, half nudged by up to ~1 % relative;
//! * the f32 pair as a directory artifact (what `ferryctl publish DIR` and MLflow imports
//!   ship): the weights with an `MLmodel` and a `requirements.txt` beside them, packed by
//!   `ferry_shared::archive`, to measure what the archive costs the tensor-aware delta.
//!
//! Ferry's figure is what the transfer would send: for every chunk the device lacks, the
//! smallest encoding against its planned window (encoded on two worker threads), plus the
//! chunk index. Apply decodes every chunk against the old version and checks its hash.
//! Anchors, side by side in the same run: whole-file zstd -19, `zstd --patch-from`, bsdiff +
//! zstd, and HDiffPatch + zstd (pip `hdiffpatch` 2.6.0, installed on first run into a virtual
//! environment in `target/bench-pairs/venv`, run by `tests/bench/hdiffpatch_anchor.py`).
//! A second table does the same for a first install of each new file (see `first_install`):
//! the stored chunks, the precomputed first install, and whole-file zstd -19.
//! Run: `cargo run --release -p ferry-tests --bin ferry-transfer-bench -- [--model-mib N]
//! [--window-mib N] [--avg-kib N] [--bsdiff-max-mib N] [--only TEXT] [--ferry-only]
//! [--no-first-install]
//! [--old FILE --new FILE]` (defaults 256, 8, 1024, 64: whole-file bsdiff is skipped on larger
//! files unless asked for; `--only` picks pairs; `--ferry-only` skips the anchors; `--old` and
//! `--new` bench that pair instead of the built-in ones). `--help` says the same.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_shared::Digest;
use ferry_shared::chunk::{ChunkIndex, ChunkParams};
use ferry_shared::delta::{self, Encoded, Limits};
use ferry_shared::plan::{Step, plan};
use ferry_shared::tensors::{self, Layout};
use ferry_tests::procfs::own_cpu_time;

mod first_install;
mod quantized;

const LEVEL: i32 = 19;

struct Pair {
    name: String,
    old: Vec<u8>,
    new: Vec<u8>,
    /// For generated pairs, whose changes are independent per element: the information the
    /// new version adds, in bytes (see [`information_floor`]).
    floor: Option<u64>,
}

struct Row {
    tool: String,
    bytes: u64,
    encode: Duration,
    /// CPU time of the encode, all threads.
    encode_cpu: Duration,
    apply: Duration,
}

/// Bytes on the wire and encode/apply time of Ferry's chunked delta transfer against
/// whole-file tools, on real artifact pairs (fetched from PyPI on first run) and a generated
/// fine-tuned model, and of a first install of each new file. Prints tables; asserts nothing.
#[derive(clap::Parser)]
#[command(name = "ferry-transfer-bench")]
struct Args {
    /// Size of the generated fine-tuned model, in MiB.
    #[arg(long, default_value_t = 256)]
    model_mib: usize,
    /// Window of old bytes each changed chunk is encoded against, in MiB.
    #[arg(long, default_value_t = 8)]
    window_mib: u64,
    /// Average chunk size, in KiB.
    #[arg(long, default_value_t = 1024)]
    avg_kib: u32,
    /// Whole-file bsdiff is skipped on larger files (it needs 9-17x the file in memory and
    /// minutes per 100 MiB).
    #[arg(long, default_value_t = 64)]
    bsdiff_max_mib: usize,
    /// Only the pairs whose key (libonnxruntime, numpy, tokenizers, lightgbm, silero 5.1,
    /// silero 6.0, silero int8, silero gguf, fine-tuned bf16, fine-tuned f32, directory f32)
    /// contains one of
    /// these comma-separated texts.
    #[arg(long, default_value = "")]
    only: String,
    /// Ferry's row (and the floor) only: for iterating on the encoder.
    #[arg(long)]
    ferry_only: bool,
    /// Skip the first-install table (its level-19 encodes take longer than the deltas).
    #[arg(long)]
    no_first_install: bool,
    /// Bench this pair of files (old version) instead of the built-in pairs.
    #[arg(long, requires = "new")]
    old: Option<PathBuf>,
    /// The new version of the pair given with --old.
    #[arg(long, requires = "old")]
    new: Option<PathBuf>,
}

fn main() -> Result<()> {
    let Args {
        model_mib,
        window_mib,
        avg_kib,
        bsdiff_max_mib,
        only,
        ferry_only,
        no_first_install,
        old,
        new,
    } = clap::Parser::parse();
    // FastCDC's bounds: min a quarter of the average, max four times it.
    let params = ChunkParams {
        min: (avg_kib * 256).clamp(64, 1 << 20),
        avg: avg_kib * 1024,
        max: (avg_kib * 4096).min(16 << 20),
    };
    params.validate()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-pairs");
    std::fs::create_dir_all(&dir)?;
    // Each pair is built only when `--only` selects it (the generated ones take a while).
    type Build<'a> = Box<dyn Fn() -> Result<Pair> + 'a>;
    let wheel =
        |package: &'static str, old: &'static str, new: &'static str, member: &'static str| {
            let dir = dir.clone();
            Box::new(move || wheel_pair(&dir, package, old, new, member)) as Build<'_>
        };
    let runtime = "onnxruntime/capi/libonnxruntime.so.";
    let silero = "silero_vad/data/silero_vad.onnx";
    let quantized = |kind: quantized::Kind| {
        let dir = dir.clone();
        Box::new(move || {
            let python = bench_python(&dir, &quantized::TOOLS, quantized::IMPORTS)?;
            let source = wheel_pair(&dir, "silero-vad", "6.0.0", "6.2.0", silero)?;
            quantized::pair(&dir, &python, &source, "silero-vad-6.0.0-6.2.0", kind)
        }) as Build<'_>
    };
    let builtin: [(&str, Build<'_>); 11] = [
        (
            "libonnxruntime",
            wheel("onnxruntime", "1.30.0", "1.31.1", runtime),
        ),
        // Native code from other compilers and projects, so that no one pair steers the
        // tuning: C (gcc), Rust (LLVM), C++ with OpenMP.
        (
            "numpy",
            wheel("numpy", "2.2.5", "2.2.6", "numpy/_core/_multiarray_umath."),
        ),
        (
            "tokenizers",
            wheel(
                "tokenizers",
                "0.21.0",
                "0.21.1",
                "tokenizers/tokenizers.abi3.so",
            ),
        ),
        (
            "lightgbm",
            wheel("lightgbm", "4.5.0", "4.6.0", "lightgbm/lib/lib_lightgbm.so"),
        ),
        ("silero 5.1", wheel("silero-vad", "5.1", "6.0.0", silero)),
        ("silero 6.0", wheel("silero-vad", "6.0.0", "6.2.0", silero)),
        // The same retrained pair as shipped quantized: no registry ships int8 or GGUF
        // releases of one model, so they are made with the tools that make such files.
        ("silero int8", quantized(quantized::Kind::Int8Onnx)),
        ("silero gguf", quantized(quantized::Kind::Q8Gguf)),
        (
            "fine-tuned bf16",
            Box::new(|| fine_tuned(model_mib, DType::Bf16)),
        ),
        (
            "fine-tuned f32",
            Box::new(|| fine_tuned(model_mib, DType::F32)),
        ),
        (
            "directory f32",
            Box::new(|| packed(fine_tuned(model_mib, DType::F32)?)),
        ),
    ];
    let pairs: Vec<(&str, Build<'_>)> = match (old, new) {
        (Some(old), Some(new)) => vec![("", Box::new(move || given_pair(&old, &new)))],
        _ => builtin.into_iter().collect(),
    };
    let anchors = if ferry_only {
        None
    } else {
        Some(Anchors {
            python: bench_python(&dir, &[HDIFFPATCH], "hdiffpatch")?,
            scratch: dir.join("scratch"),
        })
    };
    println!("window {window_mib} MiB, chunks {params:?}, zstd level {LEVEL}");
    println!();
    println!("| pair | tool | bytes on the wire | % of new | encode | encode CPU | apply |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let wanted = |key: &str| only.split(',').any(|text| key.contains(text.trim()));
    // The first-install table follows the delta table: (file, its length, rows).
    let mut installs = Vec::new();
    for (_, build) in pairs.iter().filter(|(key, _)| wanted(key)) {
        let pair = &build()?;
        if !no_first_install {
            installs.push((
                pair.name.clone(),
                pair.new.len(),
                first_install::rows(&pair.new, params, !ferry_only)?,
            ));
        }
        for row in run_all(
            pair,
            window_mib << 20,
            params,
            bsdiff_max_mib << 20,
            anchors.as_ref(),
        )? {
            println!(
                "| {} | {} | {} | {:.1} % | {:.2} s | {:.2} s | {:.2} s |",
                pair.name,
                row.tool,
                row.bytes,
                row.bytes as f64 * 100.0 / pair.new.len() as f64,
                row.encode.as_secs_f64(),
                row.encode_cpu.as_secs_f64(),
                row.apply.as_secs_f64()
            );
        }
    }
    if installs.is_empty() {
        return Ok(());
    }
    println!();
    println!("First install (the new file of each pair, to a device that holds no version of it):");
    println!();
    println!(
        "| new file of | tool | bytes on the wire | % of file | encode | encode CPU | apply |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, len, rows) in installs {
        for row in rows {
            println!(
                "| {name} | {} | {} | {:.1} % | {:.2} s | {:.2} s | {:.2} s |",
                row.tool,
                row.bytes,
                row.bytes as f64 * 100.0 / len.max(1) as f64,
                row.encode.as_secs_f64(),
                row.encode_cpu.as_secs_f64(),
                row.apply.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// What the anchors outside this process need.
struct Anchors {
    /// A Python with HDiffPatch (see [`hdiffpatch_python`]).
    python: PathBuf,
    /// Where a pair is written for it.
    scratch: PathBuf,
}

fn run_all(
    pair: &Pair,
    window: u64,
    params: ChunkParams,
    bsdiff_max: usize,
    anchors: Option<&Anchors>,
) -> Result<Vec<Row>> {
    let mut rows = vec![ferry(pair, window, params)?];
    if let Some(bytes) = pair.floor {
        rows.push(Row {
            tool: "information floor (per-tensor entropy of the element change)".into(),
            bytes,
            encode: Duration::ZERO,
            encode_cpu: Duration::ZERO,
            apply: Duration::ZERO,
        });
    }
    let Some(anchors) = anchors else {
        return Ok(rows);
    };
    rows.push(timed(
        "zstd -19 (whole file)",
        pair,
        |_, new| Ok(zstd::bulk::compress(new, LEVEL)?),
        |_, enc, len| Ok(zstd::bulk::decompress(enc, len)?),
    )?);
    rows.push(timed(
        "zstd -19 --patch-from --long (whole file)",
        pair,
        |old, new| Ok(delta::zstd_with_prefix(new, old, LEVEL)?),
        |old, enc, len| {
            Ok(delta::decode(
                delta::Encoding::ZstdRef,
                enc,
                Some(old),
                len,
                &whole_limits(old, len),
            )?)
        },
    )?);
    rows.push(hdiffpatch(pair, anchors)?);
    if pair.old.len() <= bsdiff_max {
        rows.push(timed(
            "bsdiff + zstd -19 (whole file)",
            pair,
            |old, new| {
                let mut patch = Vec::new();
                bsdiff::diff(old, new, &mut patch)?;
                Ok(zstd::bulk::compress(&patch, LEVEL)?)
            },
            |old, enc, len| {
                let patch = zstd::bulk::decompress(enc, 64 * len + (1 << 20))?;
                let mut out = Vec::with_capacity(len);
                bsdiff::patch(old, &mut patch.as_slice(), &mut out)?;
                Ok(out)
            },
        )?);
    }
    Ok(rows)
}

fn whole_limits(old: &[u8], len: usize) -> Limits {
    Limits {
        max_chunk: len.max(1),
        max_reference: old.len().max(1),
    }
}

type Encoder = fn(&[u8], &[u8]) -> Result<Vec<u8>>;
type Decoder = fn(&[u8], &[u8], usize) -> Result<Vec<u8>>;

fn timed(tool: &str, pair: &Pair, encode: Encoder, decode: Decoder) -> Result<Row> {
    let (start, cpu) = (Instant::now(), own_cpu_time()?);
    let encoded = encode(&pair.old, &pair.new)?;
    let (encode_time, encode_cpu) = (start.elapsed(), own_cpu_time()? - cpu);
    let start = Instant::now();
    let back = decode(&pair.old, &encoded, pair.new.len())?;
    let apply_time = start.elapsed();
    if back != pair.new {
        bail!("{tool} did not reproduce {}", pair.name);
    }
    Ok(Row {
        tool: tool.into(),
        bytes: encoded.len() as u64,
        encode: encode_time,
        encode_cpu,
        apply: apply_time,
    })
}

/// Ferry: chunk both versions, plan against the old one, encode each missing chunk against
/// its window on two workers; apply decodes and verifies every chunk.
fn ferry(pair: &Pair, window_max: u64, params: ChunkParams) -> Result<Row> {
    let (start, cpu) = (Instant::now(), own_cpu_time()?);
    let old_index = ChunkIndex::build(pair.old.as_slice(), params)?.index;
    let new_index = ChunkIndex::build(pair.new.as_slice(), params)?.index;
    let the_plan = plan(&new_index, std::slice::from_ref(&old_index), window_max);
    // What the coordinator records at publish: each version's tensor layout, if it has one.
    let old_layout = Layout::detect(pair.old.as_slice());
    let new_layout = Layout::detect(pair.new.as_slice());
    let offsets: Vec<u64> = new_index.spans().map(|(o, _)| o).collect();
    let jobs: Vec<(usize, Option<ferry_shared::plan::Window>)> = the_plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Fetch { chunk, window } => Some((*chunk, *window)),
            Step::Copy { .. } => None,
        })
        .collect();
    let chunk_bytes = |i: usize| {
        let at = offsets[i] as usize;
        &pair.new[at..at + new_index.chunks[i].len as usize]
    };
    let window_bytes =
        |w: &ferry_shared::plan::Window| &pair.old[w.offset as usize..(w.offset + w.len) as usize];
    let cut = |i: usize, w: &ferry_shared::plan::Window| {
        new_layout.as_ref().map(|layout| {
            tensors::segments(
                layout,
                offsets[i],
                new_index.chunks[i].len,
                old_layout.as_ref().map(|l| (l, w.offset, w.len)),
            )
        })
    };
    let workers = 2;
    // As the coordinator does: one suffix index per worker, shared by chunks of one window.
    let suffixes = delta::SuffixCache::new(workers);
    let mut encoded: Vec<(usize, Encoded)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|k| {
                let (jobs, cut, suffixes) = (&jobs, &cut, &suffixes);
                scope.spawn(move || {
                    jobs.iter()
                        .skip(k)
                        .step_by(workers)
                        .map(|(i, w)| {
                            let enc = match w {
                                Some(w) => {
                                    // Sorted only if the screen tries covers.
                                    let index = || {
                                        suffixes.get_or_build((w.offset, w.len), window_bytes(w))
                                    };
                                    delta::encode_best_in_window(
                                        chunk_bytes(*i),
                                        window_bytes(w),
                                        w.at as usize,
                                        cut(*i, w).as_deref(),
                                        Some(&index),
                                        LEVEL,
                                    )
                                }
                                None => delta::encode_best(chunk_bytes(*i), None, LEVEL),
                            };
                            (*i, enc)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    encoded.sort_by_key(|(i, _)| *i);
    let (encode_time, encode_cpu) = (start.elapsed(), own_cpu_time()? - cpu);
    let index_bytes = new_index.to_canonical_bytes().len() as u64;
    let payload_bytes: u64 = encoded
        .iter()
        .map(|(_, e)| e.payload.len() as u64 + 2)
        .sum();

    // Apply, as the agent would: copy local chunks, decode fetched ones, verify each hash.
    let start = Instant::now();
    let mut out = Vec::with_capacity(pair.new.len());
    let mut fetched = encoded.iter();
    for (i, step) in the_plan.steps.iter().enumerate() {
        let expected = new_index.chunks[i];
        let bytes = match step {
            Step::Copy { offset, len, .. } => {
                pair.old[*offset as usize..*offset as usize + *len as usize].to_vec()
            }
            Step::Fetch { window, .. } => {
                let (_, enc) = fetched.next().context("missing encoded chunk")?;
                delta::decode_in_window(
                    enc.encoding,
                    &enc.payload,
                    window.map(|w| (window_bytes(&w), w.at as usize)),
                    expected.len as usize,
                    &Limits::DEFAULT,
                )?
            }
        };
        if Digest::of(&bytes) != expected.hash {
            bail!("chunk {i} of {} does not verify", pair.name);
        }
        out.extend_from_slice(&bytes);
    }
    let apply_time = start.elapsed();
    if out != pair.new {
        bail!("Ferry did not reproduce {}", pair.name);
    }
    let mut used: Vec<String> = encoded
        .iter()
        .map(|(_, e)| e.encoding.to_string())
        .collect();
    used.sort();
    used.dedup();
    Ok(Row {
        tool: format!(
            "**Ferry** ({} of {} chunks sent; {})",
            encoded.len(),
            new_index.chunks.len(),
            used.join(", ")
        ),
        bytes: payload_bytes + index_bytes,
        encode: encode_time,
        encode_cpu,
        apply: apply_time,
    })
}

/// HDiffPatch's version, the anchor the issue measured against.
const HDIFFPATCH: &str = "hdiffpatch==2.6.0";

/// A Python that can `import` the modules `imports` names, in a virtual environment made once
/// in `dir/venv` (`python3 -m venv`), with `requirements` installed by pip when the import
/// fails.
fn bench_python(dir: &Path, requirements: &[&str], imports: &str) -> Result<PathBuf> {
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {imports}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("cannot run python3 (the benchmark runs tools from PyPI)")?;
        if !made.success() {
            bail!(
                "python3 -m venv {} failed (install python3-venv)",
                venv.display()
            );
        }
    }
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(requirements)
        .status()?;
    if !installed.success() || !ready(&python) {
        bail!(
            "pip install {} into {} failed",
            requirements.join(" "),
            venv.display()
        );
    }
    Ok(python)
}

/// HDiffPatch + zstd on the whole file, run by `tests/bench/hdiffpatch_anchor.py`, which
/// times the diff and the apply in its own process and checks the result.
fn hdiffpatch(pair: &Pair, anchors: &Anchors) -> Result<Row> {
    #[derive(serde::Deserialize)]
    struct Measured {
        bytes: u64,
        encode: f64,
        encode_cpu: f64,
        apply: f64,
    }
    std::fs::create_dir_all(&anchors.scratch)?;
    let (old, new) = (anchors.scratch.join("old"), anchors.scratch.join("new"));
    std::fs::write(&old, &pair.old)?;
    std::fs::write(&new, &pair.new)?;
    let level = LEVEL.to_string();
    let stdout = run_script(
        &anchors.python,
        "hdiffpatch_anchor.py",
        &[old.as_os_str(), new.as_os_str(), level.as_ref()],
        &format!("HDiffPatch on {}", pair.name),
    )?;
    let m: Measured = serde_json::from_slice(&stdout)
        .with_context(|| format!("HDiffPatch printed {:?}", String::from_utf8_lossy(&stdout)))?;
    Ok(Row {
        tool: format!("HDiffPatch + zstd -{LEVEL} (whole file, pip {HDIFFPATCH})"),
        bytes: m.bytes,
        encode: Duration::from_secs_f64(m.encode),
        encode_cpu: Duration::from_secs_f64(m.encode_cpu),
        apply: Duration::from_secs_f64(m.apply),
    })
}

/// Runs `tests/bench/{script}` with `python` and `args`; its standard output, or its standard
/// error in the failure (`what` names the job).
fn run_script(
    python: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
    what: &str,
) -> Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join(script);
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// A pair of files given on the command line.
fn given_pair(old: &Path, new: &Path) -> Result<Pair> {
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    Ok(Pair {
        name: format!("{} → {}", name(old), name(new)),
        old: std::fs::read(old).with_context(|| format!("cannot read {}", old.display()))?,
        new: std::fs::read(new).with_context(|| format!("cannot read {}", new.display()))?,
        floor: None,
    })
}

/// Downloads two releases of a package from PyPI and extracts one member (by prefix) of each.
fn wheel_pair(
    dir: &Path,
    package: &str,
    old: &str,
    new: &str,
    member_prefix: &str,
) -> Result<Pair> {
    let extract = |version: &str| -> Result<Vec<u8>> {
        let target = dir.join(format!("{package}-{version}"));
        let cached = target.join("member.bin");
        if let Ok(bytes) = std::fs::read(&cached) {
            return Ok(bytes);
        }
        std::fs::create_dir_all(&target)?;
        let status = Command::new("pip")
            .args([
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux_2_28_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "any",
                "-d",
            ])
            .arg(&target)
            .arg(format!("{package}=={version}"))
            .status()
            .context("cannot run pip (the benchmark fetches its pairs from PyPI)")?;
        if !status.success() {
            bail!("pip download {package}=={version} failed");
        }
        let wheel: PathBuf = std::fs::read_dir(&target)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .context("no wheel downloaded")?;
        let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nname = next(n for n in z.namelist() if n.startswith(sys.argv[2]))\nopen(sys.argv[3], 'wb').write(z.read(name))\n";
        let status = Command::new("python3")
            .args(["-c", script])
            .arg(&wheel)
            .arg(member_prefix)
            .arg(&cached)
            .status()?;
        if !status.success() {
            bail!("no {member_prefix}* in {}", wheel.display());
        }
        Ok(std::fs::read(&cached)?)
    };
    Ok(Pair {
        name: format!(
            "{} {old} → {new}",
            member_prefix
                .rsplit('/')
                .next()
                .unwrap_or(package)
                .trim_end_matches('.')
        ),
        old: extract(old)?,
        new: extract(new)?,
        floor: None,
    })
}

/// Element types the generated fine-tuned model can hold.
#[derive(Clone, Copy)]
enum DType {
    F32,
    Bf16,
}

/// A safetensors model of 1–8 MiB tensors whose weights have full-precision mantissas, as
/// trained weights do; the fine-tuned version leaves every other tensor alone and nudges each
/// weight of the rest by a uniform factor within ±1 %. bf16 is how fine-tuned checkpoints are
/// commonly shipped; f32 shows the floor a 1 % nudge leaves (its low 16 mantissa bits turn
/// to noise).
/// `pair` as directory artifacts: each side's weights as `data/model.safetensors` beside an
/// `MLmodel` and a `requirements.txt` (changed between the versions, as a retrain changes
/// them), packed as `ferryctl publish DIR` packs.
fn packed(pair: Pair) -> Result<Pair> {
    let pack = |weights: &[u8], pins: &str| -> Result<Vec<u8>> {
        let tree = tempfile::tempdir()?;
        std::fs::create_dir_all(tree.path().join("data"))?;
        std::fs::write(
            tree.path().join("MLmodel"),
            "flavors:\n  python_function:\n    loader_module: mlflow.pytorch\n",
        )?;
        std::fs::write(tree.path().join("requirements.txt"), pins)?;
        std::fs::write(tree.path().join("data/model.safetensors"), weights)?;
        let mut out = Vec::new();
        ferry_shared::archive::pack(tree.path(), &mut out)?;
        Ok(out)
    };
    Ok(Pair {
        name: format!("{} (directory)", pair.name),
        old: pack(&pair.old, "torch==2.5.1\nnumpy==2.2.5\n")?,
        new: pack(&pair.new, "torch==2.5.1\nnumpy==2.2.6\n")?,
        floor: pair.floor,
    })
}

fn fine_tuned(mib: usize, dtype: DType) -> Result<Pair> {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (width, name) = match dtype {
        DType::F32 => (4usize, "F32"),
        DType::Bf16 => (2, "BF16"),
    };
    let encode = |w: f32, out: &mut Vec<u8>| match dtype {
        DType::F32 => out.extend(w.to_le_bytes()),
        DType::Bf16 => out.extend(to_bf16(w).to_le_bytes()),
    };
    let decode = |bytes: &[u8]| match dtype {
        DType::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        DType::Bf16 => f32::from_bits(u32::from(u16::from_le_bytes([bytes[0], bytes[1]])) << 16),
    };
    let mut tensors = Vec::new();
    let mut total = 0usize;
    while total < mib << 20 {
        let bytes = ((1 + next() % 8) as usize) << 20;
        tensors.push(bytes / width);
        total += bytes;
    }
    let mut header = serde_json::Map::new();
    let mut at = 0usize;
    for (t, elems) in tensors.iter().enumerate() {
        header.insert(
            format!("layers.{t}.weight"),
            serde_json::json!({"dtype": name, "shape": [elems], "data_offsets": [at, at + elems * width]}),
        );
        at += elems * width;
    }
    let header = serde_json::to_vec(&header)?;
    let (mut old, mut new) = (Vec::with_capacity(at + 4096), Vec::with_capacity(at + 4096));
    for out in [&mut old, &mut new] {
        out.extend((header.len() as u64).to_le_bytes());
        out.extend(&header);
    }
    let uniform = |r: u64| (r >> 11) as f32 / (1u64 << 53) as f32;
    for (t, elems) in tensors.iter().enumerate() {
        for _ in 0..*elems {
            // Roughly normal, σ ≈ 0.02, like an initialised-then-trained layer.
            let w = (uniform(next()) + uniform(next()) + uniform(next()) - 1.5) * 0.035;
            let start = old.len();
            encode(w, &mut old);
            let stored = decode(&old[start..]);
            if t % 2 == 0 {
                new.extend_from_slice(&old[start..]);
            } else {
                encode(stored * (1.0 + (uniform(next()) - 0.5) * 0.02), &mut new);
            }
        }
    }
    let floor = information_floor(&old, &new, width);
    Ok(Pair {
        name: format!("fine-tuned model ({mib} MiB {name}, generated)"),
        old,
        new,
        floor: Some(floor),
    })
}

/// What no lossless encoding can go below when each weight's change is independent: for
/// every tensor, the order-0 entropy of the integer change of its elements' bit patterns,
/// times its element count. Tensors are read from the safetensors layout.
fn information_floor(old: &[u8], new: &[u8], width: usize) -> u64 {
    let Some(layout) = Layout::detect(new) else {
        return 0;
    };
    let bits_of = |b: &[u8]| match width {
        2 => i64::from(u16::from_le_bytes([b[0], b[1]])),
        _ => i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    };
    let mut bits = 0.0f64;
    for span in &layout.spans {
        let range = span.offset as usize..(span.offset + span.len) as usize;
        let mut counts: std::collections::HashMap<i64, u64> = std::collections::HashMap::new();
        for (a, b) in old[range.clone()]
            .chunks_exact(width)
            .zip(new[range].chunks_exact(width))
        {
            *counts.entry(bits_of(b) - bits_of(a)).or_default() += 1;
        }
        let n: u64 = counts.values().sum();
        for c in counts.values() {
            let p = *c as f64 / n as f64;
            bits -= *c as f64 * p.log2();
        }
    }
    (bits / 8.0) as u64
}

/// Rounds to bfloat16 (nearest, ties to even), as training frameworks store it.
fn to_bf16(w: f32) -> u16 {
    let bits = w.to_bits();
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}
