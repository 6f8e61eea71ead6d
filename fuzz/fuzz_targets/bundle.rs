//! Offline bundle decoding on hostile bytes: the header reader and a sealed key and payload
//! opened from them: a refusal, never a panic.
#![no_main]

use std::io::Cursor;

use ferry_shared::Digest;
use ferry_shared::bundle::read_header;
use ferry_shared::seal::{ContentKey, WrappedKey};
use ferry_shared::sign::SecretKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = read_header(&mut Cursor::new(data)) {
        let identity = SecretKey::from_seed(&[7; 32]);
        for wrapped in &header.sealed_for {
            let _ = ContentKey::unwrap(wrapped, &identity);
        }
    }
    if data.len() > 32 {
        let wrapped = WrappedKey {
            device: ferry_shared::wire::DeviceId::of(&SecretKey::from_seed(&[7; 32]).public()),
            ephemeral: data[..32].try_into().unwrap_or([0; 32]),
            sealed: data[32..].to_vec(),
        };
        if let Ok(key) = ContentKey::unwrap(&wrapped, &SecretKey::from_seed(&[7; 32])) {
            let _ = key.open(&Digest::of(b"chunk"), data);
        }
    }
});
