//! What the device is, read from the system rather than trusted from a label: an NVIDIA GPU
//! (`/proc/driver/nvidia/version`, its GPUs under `/proc/driver/nvidia/gpus/`), a Jetson
//! (`/etc/nv_tegra_release`, the device-tree model), the CPU features inference runtimes pick
//! kernels by (`/proc/cpuinfo`), and the memory (`/proc/meminfo`). Reported as labels in the
//! agent's hello, beside the operator's (which win on a clash), so cohorts can select on them
//! (`gpu=nvidia`, `cpu.avx512f=true`). Everything is read under a root directory, so tests
//! point it at a fixture tree; anything missing or unreadable is simply not reported.

use std::collections::BTreeMap;
use std::path::Path;

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
    }
    if let Some(release) = read("etc/nv_tegra_release")
        && let Some(l4t) = l4t_release(&release)
    {
        out.insert("gpu".into(), "nvidia".into());
        out.insert("jetson.l4t".into(), l4t);
        if let Some(model) = read("proc/device-tree/model") {
            let model = value(model.trim_end_matches('\0'));
            if !model.is_empty() {
                out.insert("jetson.model".into(), model);
            }
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
        ]);
        let labels = labels(root.path());
        assert_eq!(labels["gpu"], "nvidia");
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
