//! Choosing the variant of a release that fits a device.

use crate::manifest::{Accelerator, Release, Target, Variant};

/// What a device is, as far as choosing a build goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The device's target triple (the agent's own build target).
    pub target: String,
    /// The accelerator the device offers.
    pub accelerator: Accelerator,
}

/// The best variant for `device`, or `None` when nothing in the release runs there.
///
/// A variant built for the exact accelerator beats one for any; a GPU device falls back to a
/// CPU build only where the release allows it (`cpu_fallback`); a CPU device never runs a
/// GPU build. An exact target triple beats `any`.
pub fn select_variant<'r>(release: &'r Release, device: &DeviceProfile) -> Option<&'r Variant> {
    release
        .variants
        .iter()
        .filter_map(|v| {
            let fit = accelerator_fit(v, device, release.cpu_fallback)?;
            Some(((fit, target_fit(v, device)?), v))
        })
        .max_by_key(|(score, _)| *score)
        .map(|(_, v)| v)
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
}
