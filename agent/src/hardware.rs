//! What the device is, read from the system rather than trusted from a label: an NVIDIA GPU
//! (`/proc/driver/nvidia/version`, its GPUs under `/proc/driver/nvidia/gpus/`, and the CUDA
//! version and compute capability from `nvidia-smi` when the driver ships it), a Jetson
//! (`/etc/nv_tegra_release`, the device-tree model, `/usr/local/cuda/version.json`), the CPU
//! features inference runtimes pick kernels by (`/proc/cpuinfo`), and the memory
//! (`/proc/meminfo`). Reported as labels in the agent's hello, over the operator's, so
//! cohorts can select on them (`gpu=nvidia`, `cpu.avx512f=true`) and variants' requirements
//! (`cuda >= 12.2`) are checked against them. Everything is read (and `nvidia-smi` run) under
//! a root directory, so tests point it at a fixture tree; anything missing, unreadable or slow
//! is simply not reported.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_shared::requirement::compare_versions;

/// Where drivers and containers put `nvidia-smi`, under the root.
const NVIDIA_SMI: [&str; 4] = [
    "usr/bin/nvidia-smi",
    "usr/local/bin/nvidia-smi",
    "usr/local/nvidia/bin/nvidia-smi",
    "bin/nvidia-smi",
];

/// Longest `nvidia-smi` may take (it hangs on a wedged GPU; detection must not).
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// Jetson modules' GPU compute capability, by a word of the device-tree model.
const JETSON_COMPUTE: [(&str, &str); 5] = [
    ("thor", "11.0"),
    ("orin", "8.7"),
    ("xavier", "7.2"),
    ("tx2", "6.2"),
    ("nano", "5.3"),
];

/// CPU features worth a label: those inference runtimes choose kernels by.
const CPU_FEATURES: [&str; 12] = [
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    // ARM (`Features` in /proc/cpuinfo): `asimd` is NEON on aarch64.
    "asimd",
    "sve",
    "i8mm",
];

/// The labels the system says about itself.
pub fn labels(root: &Path) -> BTreeMap<String, String> {
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
    let mut out = BTreeMap::new();
    if let Some(version) = read("proc/driver/nvidia/version") {
        out.insert("gpu".into(), "nvidia".into());
        if let Some(driver) = nvidia_driver(&version) {
            out.insert("nvidia.driver".into(), driver);
        }
        let gpus = std::fs::read_dir(root.join("proc/driver/nvidia/gpus"))
            .map(|d| d.count())
            .unwrap_or(0);
        if gpus > 0 {
            out.insert("gpu.count".into(), gpus.to_string());
        }
        if let Some(smi) = NVIDIA_SMI
            .iter()
            .map(|p| root.join(p))
            .find(|p| p.is_file())
        {
            if let Some(cuda) = run(&smi, &[], NVIDIA_SMI_TIMEOUT).and_then(|o| smi_cuda(&o)) {
                out.insert("cuda".into(), cuda);
            }
            let query = ["--query-gpu=compute_cap", "--format=csv,noheader"];
            if let Some(cc) = run(&smi, &query, NVIDIA_SMI_TIMEOUT).and_then(|o| lowest_version(&o))
            {
                out.insert("compute_capability".into(), cc);
            }
        }
    }
    if let Some(release) = read("etc/nv_tegra_release")
        && let Some(l4t) = l4t_release(&release)
    {
        out.insert("gpu".into(), "nvidia".into());
        out.insert("jetson.l4t".into(), l4t);
        if let Some(model) = read("proc/device-tree/model") {
            let model = value(model.trim_end_matches('\0'));
            if let Some((_, cc)) = JETSON_COMPUTE.iter().find(|(w, _)| model.contains(w)) {
                out.insert("compute_capability".into(), (*cc).into());
            }
            if !model.is_empty() {
                out.insert("jetson.model".into(), model);
            }
        }
        let cuda = read("usr/local/cuda/version.json")
            .and_then(|j| cuda_from_json(&j))
            .or_else(|| read("usr/local/cuda/version.txt").and_then(|t| cuda_from_text(&t)));
        if let Some(cuda) = cuda {
            out.insert("cuda".into(), cuda);
        }
    }
    if let Some(cpuinfo) = read("proc/cpuinfo") {
        for feature in cpu_features(&cpuinfo) {
            let name = if feature == "asimd" { "neon" } else { feature };
            out.insert(format!("cpu.{name}"), "true".into());
        }
    }
    if let Some(gib) = read("proc/meminfo").and_then(|m| memory_gib(&m)) {
        out.insert("memory.gib".into(), gib.to_string());
    }
    out
}

/// `550.54.15` from `NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar …`.
fn nvidia_driver(version: &str) -> Option<String> {
    let line = version.lines().find(|l| l.starts_with("NVRM version"))?;
    let after = line.split("Kernel Module").nth(1).unwrap_or(line);
    after
        .split_whitespace()
        .find(|w| {
            w.split('.').count() >= 2
                && w.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// Runs a detection program: its output if it exits 0 within `timeout`.
fn run(program: &Path, args: &[&str], timeout: Duration) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    // Read on the side, so a chatty program cannot block on a full pipe while we wait.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout
            .by_ref()
            .take(1 << 20)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            outcome => {
                match outcome {
                    Err(e) => {
                        tracing::warn!("waiting for {}: {e}; not reported", program.display())
                    }
                    _ => {
                        tracing::warn!("{} did not answer in time; not reported", program.display())
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let text = reader.join().ok()??;
    status.success().then_some(text)
}

/// `12.4` from nvidia-smi's banner (`… Driver Version: 550.54.15   CUDA Version: 12.4 |`).
fn smi_cuda(banner: &str) -> Option<String> {
    let after = banner.split("CUDA Version:").nth(1)?;
    after
        .split(|c: char| c.is_whitespace() || c == '|')
        .find(|w| !w.is_empty())
        .and_then(version_word)
}

/// The lowest of one version per line (the weakest GPU decides what the device can run).
fn lowest_version(lines: &str) -> Option<String> {
    lines
        .lines()
        .filter_map(|l| version_word(l.trim()))
        .min_by(|a, b| compare_versions(a, b).unwrap_or(std::cmp::Ordering::Equal))
}

/// `major.minor` when `word` is a dotted number (`12.4`, `11.4.315` → `11.4`).
fn version_word(word: &str) -> Option<String> {
    let parts: Vec<&str> = word.split('.').collect();
    let numeric = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()));
    numeric.then(|| format!("{}.{}", parts[0], parts[1]))
}

/// `11.4` from JetPack's `/usr/local/cuda/version.json` (`{"cuda": {"version": "11.4.315"}}`).
fn cuda_from_json(json: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    version_word(doc.get("cuda")?.get("version")?.as_str()?)
}

/// `10.2` from older releases' `/usr/local/cuda/version.txt` (`CUDA Version 10.2.89`).
fn cuda_from_text(text: &str) -> Option<String> {
    text.split_whitespace().find_map(version_word)
}

/// `35.4.1` from `# R35 (release), REVISION: 4.1, GCID: …`.
fn l4t_release(release: &str) -> Option<String> {
    let line = release
        .lines()
        .find(|l| l.trim_start().starts_with("# R"))?;
    let major: String = line
        .trim_start()
        .trim_start_matches("# R")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let revision = line.split("REVISION:").nth(1)?.split(',').next()?.trim();
    (!major.is_empty() && !revision.is_empty()).then(|| format!("{major}.{revision}"))
}

/// The listed [`CPU_FEATURES`] the first processor reports.
fn cpu_features(cpuinfo: &str) -> Vec<&'static str> {
    let Some(line) = cpuinfo.lines().find(|l| {
        let key = l.split(':').next().unwrap_or("").trim();
        key == "flags" || key == "Features"
    }) else {
        return Vec::new();
    };
    let have: std::collections::BTreeSet<&str> = line
        .split(':')
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    CPU_FEATURES
        .into_iter()
        .filter(|f| have.contains(f))
        .collect()
}

/// `MemTotal` rounded to whole GiB.
fn memory_gib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib + (1 << 19)) >> 20)
}

/// Text as a label value: lowercase, runs of anything but letters, digits, `.` and `-` as `-`.
fn value(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    /// A fake `nvidia-smi` at `usr/bin/` under `root`: its banner, and the compute
    /// capabilities for the query.
    fn fake_nvidia_smi(root: &Path, banner: &str, compute: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join("usr/bin/nvidia-smi");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n--query-gpu=compute_cap) printf '{compute}' ;;\n*) printf '{banner}' ;;\nesac\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn nvidia_smi_gives_cuda_and_the_weakest_gpus_compute_capability() {
        let root = tree(&[(
            "proc/driver/nvidia/version",
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n",
        )]);
        fake_nvidia_smi(
            root.path(),
            "+------+\n| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |\n",
            "8.9\n7.5\n12.0\n",
        );
        let labels = labels(root.path());
        assert_eq!(labels["cuda"], "12.4");
        assert_eq!(labels["compute_capability"], "7.5");
        // No driver, no nvidia-smi run; a failing or silent one reports nothing.
        fake_nvidia_smi(root.path(), "NVIDIA-SMI has failed\n", "[N/A]\n");
        let labels = super::labels(root.path());
        assert!(!labels.contains_key("cuda") && !labels.contains_key("compute_capability"));
    }

    #[test]
    fn a_hanging_nvidia_smi_is_given_up_on() {
        let root = tree(&[("proc/driver/nvidia/version", "NVRM version: x\n")]);
        let path = root.path().join("usr/bin/nvidia-smi");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\nexec sleep 600\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(run(&path, &[], Duration::from_millis(300)).as_deref(), None);
    }

    #[test]
    fn jetson_cuda_from_version_files() {
        assert_eq!(
            cuda_from_json(r#"{"cuda": {"name": "CUDA SDK", "version": "11.4.315"}}"#),
            Some("11.4".into())
        );
        assert_eq!(cuda_from_json("not json"), None);
        assert_eq!(
            cuda_from_text("CUDA Version 10.2.89\n"),
            Some("10.2".into())
        );
        assert_eq!(lowest_version("8.6\n8.10\ngarbage\n"), Some("8.6".into()));
    }

    #[test]
    fn an_x86_server_with_an_nvidia_gpu() {
        let root = tree(&[
            (
                "proc/driver/nvidia/version",
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            ),
            (
                "proc/driver/nvidia/gpus/0000:01:00.0/information",
                "Model: NVIDIA L4\n",
            ),
            (
                "proc/cpuinfo",
                "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx avx2 fma f16c avx512f avx512bw avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n",
            ),
            (
                "proc/meminfo",
                "MemTotal:       65790780 kB\nMemFree: 1 kB\n",
            ),
        ]);
        let labels = labels(root.path());
        assert_eq!(labels["gpu"], "nvidia");
        assert_eq!(labels["nvidia.driver"], "550.54.15");
        assert_eq!(labels["gpu.count"], "1");
        for f in [
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512_vnni",
        ] {
            assert_eq!(labels[&format!("cpu.{f}")], "true", "{f}");
        }
        assert!(!labels.contains_key("cpu.neon"));
        assert_eq!(labels["memory.gib"], "63");
        assert!(!labels.contains_key("jetson.l4t"));
    }

    #[test]
    fn a_jetson_orin_with_neon() {
        let root = tree(&[
            (
                "etc/nv_tegra_release",
                "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n",
            ),
            (
                "proc/device-tree/model",
                "NVIDIA Jetson AGX Orin Developer Kit\0",
            ),
            (
                "proc/cpuinfo",
                "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm sve i8mm\n",
            ),
            ("proc/meminfo", "MemTotal:       31997596 kB\n"),
            (
                "usr/local/cuda/version.json",
                r#"{"cuda": {"name": "CUDA SDK", "version": "11.4.315"}}"#,
            ),
        ]);
        let labels = labels(root.path());
        assert_eq!(labels["gpu"], "nvidia");
        assert_eq!(labels["cuda"], "11.4");
        assert_eq!(labels["compute_capability"], "8.7");
        assert_eq!(labels["jetson.l4t"], "35.4.1");
        assert_eq!(
            labels["jetson.model"],
            "nvidia-jetson-agx-orin-developer-kit"
        );
        assert_eq!(labels["cpu.neon"], "true");
        assert_eq!(labels["cpu.sve"], "true");
        assert_eq!(labels["cpu.i8mm"], "true");
        assert_eq!(labels["memory.gib"], "31");
    }

    #[test]
    fn a_bare_or_unreadable_system_reports_nothing_and_garbage_is_ignored() {
        assert!(labels(tree(&[]).path()).is_empty());
        let root = tree(&[
            ("proc/driver/nvidia/version", "garbage"),
            ("etc/nv_tegra_release", "# nothing here"),
            ("proc/meminfo", "MemTotal: lots\n"),
            ("proc/cpuinfo", "flags"),
        ]);
        let labels = labels(root.path());
        assert_eq!(
            labels.get("gpu").map(String::as_str),
            Some("nvidia"),
            "the driver is there"
        );
        assert!(!labels.contains_key("nvidia.driver"));
        assert!(!labels.contains_key("jetson.l4t") && !labels.contains_key("memory.gib"));
    }
}
