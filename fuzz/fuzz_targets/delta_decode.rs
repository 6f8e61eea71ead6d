//! Every chunk decoder on hostile payloads: never a panic, never more or fewer bytes than
//! declared when it succeeds.
#![no_main]

use ferry_shared::delta::{Encoding, Limits, decode, decode_in_window_reusing};
use libfuzzer_sys::fuzz_target;

/// Every valid encoding, then element widths the decoder must refuse.
fn encoding(selector: u8) -> Encoding {
    const INVALID: [Encoding; 2] = [
        Encoding::XorPlanes { width: 3 },
        Encoding::SubPlanes { width: 0 },
    ];
    let i = usize::from(selector) % (Encoding::EVERY.len() + INVALID.len());
    Encoding::EVERY
        .get(i)
        .copied()
        .unwrap_or_else(|| INVALID[i - Encoding::EVERY.len()])
}

fuzz_target!(|data: &[u8]| {
    let [selector, len_hi, len_lo, ref_len, payload @ ..] = data else {
        return;
    };
    let encoding = encoding(*selector);
    let declared = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
    // A reference derived from the input, up to 4 KiB.
    let reference: Vec<u8> = (0..usize::from(*ref_len) * 16)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let limits = Limits {
        max_chunk: 1 << 16,
        max_reference: 1 << 16,
    };
    if let Ok(out) = decode(encoding, payload, Some(&reference), declared, &limits) {
        assert_eq!(out.len(), declared);
    }
    // Into a reused buffer of another size, full of another chunk's bytes (as devices decode).
    let buffer = vec![0xa5; usize::from(*ref_len) * 64];
    let window = Some((reference.as_slice(), 0));
    if let Ok(out) = decode_in_window_reusing(encoding, payload, window, declared, &limits, buffer)
    {
        assert_eq!(out.len(), declared);
    }
});
