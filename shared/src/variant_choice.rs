//! Choosing the variant of a release that fits a device.

use std::collections::BTreeMap;

use crate::manifest::{Accelerator, Release, Target, Variant};

/// What a device is, as far as choosing a build goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The device's target triple (the agent's own build target).
    pub target: String,
    /// The accelerator the device offers.
    pub accelerator: Accelerator,
    /// What else the device is (hardware labels: `cuda`, `compute_capability`,
    /// `cpu.avx2`, …), for variants' requirements ([`crate::requirement`]).
    pub facts: BTreeMap<String, String>,
}

/// The best variant for `device`, or `None` when nothing in the release runs there.
///
/// A variant built for the exact accelerator beats one for any; a GPU device falls back to a
/// CPU build only where the release allows it (`cpu_fallback`); a CPU device never runs a
/// GPU build. An exact target triple beats `any`. A variant whose requirements the device
/// does not meet is out; among the rest, the one that asks most (the most specific build)
/// wins.
pub fn select_variant<'r>(release: &'r Release, device: &DeviceProfile) -> Option<&'r Variant> {
    release
        .variants
        .iter()
        .filter_map(|v| {
            let fit = accelerator_fit(v, device, release.cpu_fallback)?;
            let target = target_fit(v, device)?;
            v.requires
                .iter()
                .all(|r| r.met_by(&device.facts))
                .then_some(((fit, target, v.requires.len()), v))
        })
        .max_by_key(|(score, _)| *score)
        .map(|(_, v)| v)
}

/// Why no variant of `release` fits `device`, in words for an install error or a report:
/// what the release offers and, for builds the device's platform could run, what the device
/// lacks.
pub fn why_none_fits(release: &Release, device: &DeviceProfile) -> String {
    let mut lacking = Vec::new();
    for v in &release.variants {
        if accelerator_fit(v, device, release.cpu_fallback).is_none()
            || target_fit(v, device).is_none()
        {
            continue;
        }
        if let Some(why) = v.requires.iter().find_map(|r| r.unmet_by(&device.facts)) {
            lacking.push(format!("{}/{}: {why}", v.target, v.accelerator));
        }
    }
    let offers = release
        .variants
        .iter()
        .map(|v| format!("{}/{}", v.target, v.accelerator))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "no variant for {} with accelerator {} (release offers: {offers})",
        device.target, device.accelerator
    );
    if !lacking.is_empty() {
        text.push_str("; ");
        text.push_str(&lacking.join("; "));
    }
    text
}

fn accelerator_fit(variant: &Variant, device: &DeviceProfile, cpu_fallback: bool) -> Option<u8> {
    match (variant.accelerator, device.accelerator) {
        (a, d) if a == d => Some(3),
        (Accelerator::Any, _) => Some(2),
        (Accelerator::Cpu, Accelerator::Gpu) if cpu_fallback => Some(1),
        _ => None,
    }
}

fn target_fit(variant: &Variant, device: &DeviceProfile) -> Option<u8> {
    match &variant.target {
        Target::Triple(t) if *t == device.target => Some(2),
        Target::Any => Some(1),
        Target::Triple(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;

    fn variant(target: &str, accelerator: Accelerator) -> Variant {
        let mut v = sample().variants[0].clone();
        v.target = target.parse().unwrap();
        v.accelerator = accelerator;
        v
    }

    fn device(target: &str, accelerator: Accelerator) -> DeviceProfile {
        DeviceProfile {
            target: target.into(),
            accelerator,
            facts: BTreeMap::new(),
        }
    }

    #[test]
    fn picks_the_closest_fit() {
        let mut release = sample();
        release.variants = vec![
            variant("any", Accelerator::Cpu),
            variant("any", Accelerator::Gpu),
            variant("aarch64-unknown-linux-gnu", Accelerator::Cpu),
        ];
        let pick = |d| select_variant(&release, &d).map(|v| (v.target.to_string(), v.accelerator));
        assert_eq!(
            pick(device("x86_64-unknown-linux-gnu", Accelerator::Gpu)),
            Some(("any".into(), Accelerator::Gpu))
        );
        assert_eq!(
            pick(device("aarch64-unknown-linux-gnu", Accelerator::Cpu)),
            Some(("aarch64-unknown-linux-gnu".into(), Accelerator::Cpu))
        );
        assert_eq!(
            pick(device("armv7-unknown-linux-gnueabihf", Accelerator::Cpu)),
            Some(("any".into(), Accelerator::Cpu))
        );
    }

    #[test]
    fn a_gpu_device_runs_a_cpu_build_only_where_the_release_allows_it() {
        let mut release = sample();
        release.variants = vec![
            variant("any", Accelerator::Cpu),
            variant("aarch64-unknown-linux-gnu", Accelerator::Gpu),
        ];
        let gpu = device("x86_64-unknown-linux-gnu", Accelerator::Gpu);
        release.cpu_fallback = false;
        assert!(select_variant(&release, &gpu).is_none());
        release.cpu_fallback = true;
        assert_eq!(
            select_variant(&release, &gpu).map(|v| v.accelerator),
            Some(Accelerator::Cpu)
        );
        // Its own GPU build, when there is one for its target, comes first.
        let arm_gpu = device("aarch64-unknown-linux-gnu", Accelerator::Gpu);
        assert_eq!(
            select_variant(&release, &arm_gpu).map(|v| v.accelerator),
            Some(Accelerator::Gpu)
        );
    }

    #[test]
    fn a_gpu_build_never_lands_on_a_cpu_device() {
        let mut release = sample();
        release.variants = vec![variant("any", Accelerator::Gpu)];
        assert!(
            select_variant(
                &release,
                &device("x86_64-unknown-linux-gnu", Accelerator::Cpu)
            )
            .is_none()
        );
        release.variants = vec![variant("aarch64-unknown-linux-gnu", Accelerator::Cpu)];
        assert!(
            select_variant(
                &release,
                &device("x86_64-unknown-linux-gnu", Accelerator::Cpu)
            )
            .is_none()
        );
    }

    #[test]
    fn requirements_pick_the_build_the_hardware_can_run() {
        let mut release = sample();
        let mut cuda12 = variant("any", Accelerator::Gpu);
        cuda12.requires = vec![
            "cuda >= 12.2".parse().unwrap(),
            "compute_capability >= 8.7".parse().unwrap(),
        ];
        let mut cuda11 = variant("any", Accelerator::Gpu);
        cuda11.requires = vec!["cuda >= 11.4".parse().unwrap()];
        let mut avx2 = variant("any", Accelerator::Cpu);
        avx2.requires = vec!["cpu.avx2".parse().unwrap()];
        release.variants = vec![cuda11, cuda12, avx2];
        release.cpu_fallback = true;
        let gpu = |facts: &[(&str, &str)]| DeviceProfile {
            facts: facts
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..device("x86_64-unknown-linux-gnu", Accelerator::Gpu)
        };
        let pick = |d: &DeviceProfile| {
            select_variant(&release, d).map(|v| {
                v.requires
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        };
        // Orin-class with CUDA 12.4: the most specific build it meets.
        assert_eq!(
            pick(&gpu(&[("cuda", "12.4"), ("compute_capability", "8.7")])),
            Some("cuda >= 12.2,compute_capability >= 8.7".into())
        );
        // CUDA 12.4 on an older GPU: the CUDA 11 build.
        assert_eq!(
            pick(&gpu(&[("cuda", "12.4"), ("compute_capability", "7.5")])),
            Some("cuda >= 11.4".into())
        );
        // Old driver, but AVX2: the CPU fallback.
        assert_eq!(
            pick(&gpu(&[("cuda", "10.2"), ("cpu.avx2", "true")])),
            Some("cpu.avx2".into())
        );
        // Nothing fits, and the reason names each build's first unmet requirement.
        let none = gpu(&[("cuda", "10.2")]);
        assert_eq!(pick(&none), None);
        let why = why_none_fits(&release, &none);
        assert!(
            why.contains("any/gpu: needs cuda >= 11.4, the device has cuda 10.2"),
            "{why}"
        );
        assert!(
            why.contains("any/cpu: needs cpu.avx2, the device reports no cpu.avx2"),
            "{why}"
        );
    }
}
