//! Signed-envelope and manifest decoding on hostile bytes: a refusal, never a panic.
#![no_main]

use ferry_shared::manifest::Release;
use ferry_shared::sign::{Keyring, SecretKey, SignedRelease};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trusted = Keyring::new([SecretKey::from_seed(&[7; 32]).public()]);
    let _ = SignedRelease::verify(data, &trusted);
    let _ = Release::from_canonical_bytes(data);
});
