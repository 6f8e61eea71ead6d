//! Admission: a desired state checked against the device's trust and hardware before the
//! machine sees it ([`admit`]): signatures (or the TUF metadata), freshness, the variant for
//! this device, and the candidate to stage beside what runs.

use ferry_shared::sign::{Keyring, SignedRelease};
use ferry_shared::trust::{TrustError, TrustState, check_release_fresh};
use ferry_shared::variant_choice::{DeviceProfile, select_variant, why_none_fits};
use ferry_shared::wire::{DesiredRelease, DesiredState, ErrorKind, InstallError};
use ferry_shared::{ModelName, Variant, Version};

/// What a download attempt that could not start fails with: no session to the coordinator.
pub const NOT_CONNECTED: &str = "not connected to the coordinator";

/// A verified release the device should run, with the variant chosen for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The version to run.
    pub version: Version,
    /// The variant for this device.
    pub variant: Variant,
    /// The signed envelope, verbatim (stored beside the artifact).
    pub envelope: Vec<u8>,
}

/// What the coordinator asked for, after checking it on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desire {
    /// Run this.
    Run(Admitted),
    /// The alias is unset: keep what runs.
    Nothing,
    /// The coordinator asked for a version this device must refuse.
    Unusable(InstallError),
}

/// What a device checks releases against.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Publisher keys from its configuration.
    Keys(Keyring),
    /// TUF-grade metadata: a root chain walked from the configured root, and the newest
    /// snapshot accepted (see [`ferry_shared::trust`]).
    Metadata(TrustState),
}

/// Checks a desired state against the device's trust and hardware: what to run, and the
/// candidate to stage beside it. Pure; with metadata, `trust` moves forward only when the
/// coordinator's roots and snapshot verify (the caller persists it).
pub fn admit(
    desired: &DesiredState,
    model: &ModelName,
    trust: &mut Trust,
    device: &DeviceProfile,
    now: u64,
) -> (Desire, Desire) {
    let refuse_all = |message: String| {
        let refuse = |wanted: &Option<DesiredRelease>| match wanted {
            None => Desire::Nothing,
            Some(w) => Desire::Unusable(InstallError {
                version: w.version.clone(),
                kind: ErrorKind::Signature,
                message: message.clone(),
                at: now,
            }),
        };
        (refuse(&desired.release), refuse(&desired.candidate))
    };
    let snapshot = match trust {
        Trust::Keys(_) => None,
        Trust::Metadata(state) => match advance(state, desired, now) {
            Ok(snapshot) => Some(snapshot),
            Err(message) => return refuse_all(message),
        },
    };
    let mut check = |wanted: &Option<DesiredRelease>| {
        let Some(wanted) = wanted else {
            return Desire::Nothing;
        };
        let verified = match (&mut *trust, &snapshot) {
            (Trust::Metadata(state), Some(snapshot)) => state
                .check_release(snapshot, model, &wanted.version, &wanted.envelope, now)
                .map_err(|e| e.to_string()),
            (Trust::Keys(keys), _) => SignedRelease::verify(&wanted.envelope, keys)
                .map_err(|e| e.to_string())
                .and_then(|signed| {
                    check_release_fresh(&signed.release, now)
                        .map(|()| signed)
                        .map_err(|e| e.to_string())
                }),
            (Trust::Metadata(_), None) => Err("no snapshot".to_owned()),
        };
        admit_release(wanted, verified, model, device, now)
    };
    let run = check(&desired.release);
    (run, check(&desired.candidate))
}

/// Walks `state` through the coordinator's roots and onto its snapshot, all or nothing.
pub(super) fn advance(
    state: &mut TrustState,
    desired: &DesiredState,
    now: u64,
) -> Result<ferry_shared::trust::Snapshot, String> {
    let bundle = desired
        .trust
        .as_ref()
        .ok_or("the coordinator sent no trust metadata, and this device requires it")?;
    let mut next = state.clone();
    for root in &bundle.roots {
        match next.update_root(root) {
            Ok(()) => {}
            // Roots this device already walked past.
            Err(TrustError::Rollback { got, trusted, .. }) if got <= trusted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let snapshot = next
        .update_snapshot(&bundle.snapshot, now)
        .map_err(|e| e.to_string())?;
    *state = next;
    Ok(snapshot)
}

pub(super) fn admit_release(
    wanted: &DesiredRelease,
    verified: Result<SignedRelease, String>,
    model: &ModelName,
    device: &DeviceProfile,
    now: u64,
) -> Desire {
    let refuse = |kind, message: String| {
        Desire::Unusable(InstallError {
            version: wanted.version.clone(),
            kind,
            message,
            at: now,
        })
    };
    let signed = match verified {
        Ok(signed) => signed,
        Err(e) => return refuse(ErrorKind::Signature, e),
    };
    let release = &signed.release;
    if &release.name != model || release.version != wanted.version {
        return refuse(
            ErrorKind::Signature,
            format!(
                "announced {model} {} but the signed manifest is {} {}",
                wanted.version, release.name, release.version
            ),
        );
    }
    match select_variant(release, device) {
        Some(variant) => Desire::Run(Admitted {
            version: release.version.clone(),
            variant: variant.clone(),
            envelope: signed.envelope_bytes,
        }),
        None => refuse(
            ErrorKind::IncompatibleHardware,
            why_none_fits(release, device),
        ),
    }
}

pub(super) fn desired_version(desire: &Desire) -> Option<&Version> {
    match desire {
        Desire::Run(t) => Some(&t.version),
        Desire::Unusable(e) => Some(&e.version),
        Desire::Nothing => None,
    }
}
