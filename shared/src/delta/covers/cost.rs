//! Cost estimates the cover search decides by: what a cover's control record costs, and
//! roughly how many bytes a run of literal or difference bytes compresses to.
//!
//! The model is HDiffPatch's (`compress_detect.cpp`, MIT): bytes are run-length coded (runs
//! of 0 or 255 cost one unit, other runs one or two plus the value), and each value left is
//! priced by how often it followed the previous value in the last 512 KiB seen, a two-byte
//! context model that tracks what zstd's entropy stage will make of the stream.

/// Bytes of a LEB128 varint of `v` (as HDiffPatch counts them).
pub(super) fn uint_cost(mut v: u64) -> usize {
    let mut cost = 1;
    if v >> 28 != 0 {
        v >>= 28;
        cost += 4;
    }
    if v >> 14 != 0 {
        v >>= 14;
        cost += 2;
    }
    if v >> 7 != 0 {
        cost += 1;
    }
    cost
}

/// Bytes of a zigzag varint of `v`.
pub(super) fn int_cost(v: i64) -> usize {
    uint_cost(v.unsigned_abs().saturating_mul(2))
}

/// The run-length cost of `data` (minus `sub` where given, bytewise) and the values that
/// are left to entropy-code, appended to `values`.
fn rle(data: &[u8], sub: Option<&[u8]>, values: &mut Vec<u8>) -> usize {
    let at = |i: usize| match sub {
        Some(s) => data[i].wrapping_sub(s[i]),
        None => data[i],
    };
    let n = data.len();
    let mut i = 0;
    while i < n && at(i) == 0 {
        i += 1;
    }
    let mut cost = 0;
    while i < n {
        let v = at(i);
        let start = i;
        i += 1;
        while i < n && at(i) == v {
            i += 1;
        }
        if v == 0 || v == 255 {
            cost += 1;
        } else {
            cost += if i - start <= 1 { 1 } else { 2 };
            values.push(v);
        }
    }
    cost
}

/// The run-length cost of `data` − `sub` alone, without the entropy model.
pub(super) fn region_rle_cost(data: &[u8], sub: &[u8]) -> usize {
    let mut values = Vec::new();
    rle(data, Some(sub), &mut values)
}

/// How many bytes of history the model keeps.
const HISTORY: usize = 1 << 19;
/// Bytes processed per step (bounds the scratch buffer).
const STEP: usize = 1024;

/// A two-byte context model over the last [`HISTORY`] run-length values.
pub(super) struct Detector {
    single: Vec<u32>,
    pairs: Vec<u32>,
    history: Vec<u8>,
    begin: usize,
    len: usize,
    last: Option<u8>,
    last_popped: Option<u8>,
}

impl Detector {
    pub(super) fn new() -> Self {
        Self {
            single: vec![0; 256],
            pairs: vec![0; 256 * 256],
            history: vec![0; HISTORY],
            begin: 0,
            len: 0,
            last: None,
            last_popped: None,
        }
    }

    /// Learns `data` (minus `sub`).
    pub(super) fn add(&mut self, data: &[u8], sub: Option<&[u8]>) {
        // Only the tail can stay in the history anyway.
        let skip = data.len().saturating_sub(HISTORY);
        let (data, sub) = (&data[skip..], sub.map(|s| &s[skip..]));
        let mut values = Vec::with_capacity(STEP);
        for (i, piece) in data.chunks(STEP).enumerate() {
            values.clear();
            rle(
                piece,
                sub.map(|s| &s[i * STEP..i * STEP + piece.len()]),
                &mut values,
            );
            for &v in &values {
                self.learn(v);
            }
        }
    }

    fn learn(&mut self, v: u8) {
        let Some(last) = self.last else {
            self.last = Some(v);
            self.single[usize::from(v)] += 1;
            return;
        };
        self.single[usize::from(v)] += 1;
        self.pairs[usize::from(last) * 256 + usize::from(v)] += 1;
        self.last = Some(v);
        if self.len == HISTORY {
            let popped = self.history[self.begin];
            self.begin = (self.begin + 1) % HISTORY;
            self.len -= 1;
            self.single[usize::from(popped)] -= 1;
            if let Some(before) = self.last_popped {
                let pair = &mut self.pairs[usize::from(before) * 256 + usize::from(popped)];
                *pair = pair.saturating_sub(1);
            }
            self.last_popped = Some(popped);
        }
        let end = (self.begin + self.len) % HISTORY;
        self.history[end] = v;
        self.len += 1;
    }

    /// The estimated cost of `data` (minus `sub`) given what was learned.
    pub(super) fn cost(&self, data: &[u8], sub: Option<&[u8]>) -> usize {
        let mut values = Vec::with_capacity(STEP);
        let mut total = 0;
        for (i, piece) in data.chunks(STEP).enumerate() {
            values.clear();
            let runs = rle(
                piece,
                sub.map(|s| &s[i * STEP..i * STEP + piece.len()]),
                &mut values,
            );
            total += runs - values.len().min(runs) + self.entropy(&values);
        }
        total
    }

    /// Bits to code `values` under the model, in HDiffPatch's units (twelfths of a bit
    /// budget of 12 bits per value, rounded).
    fn entropy(&self, values: &[u8]) -> usize {
        const DIV_BITS: usize = 12;
        const MAX_BITS: u32 = 12;
        if values.is_empty() {
            return 0;
        }
        let Some(mut last) = self.last else {
            return values.len();
        };
        let mut bits = 0usize;
        for &v in values {
            let mut pair = u64::from(self.pairs[usize::from(last) * 256 + usize::from(v)]);
            let all = 1 + u64::from(self.single[usize::from(last)]);
            last = v;
            if (pair << (MAX_BITS - 1)) > all {
                for shift in [8u32, 4, 2] {
                    if (pair << shift) < all {
                        pair <<= shift;
                        bits += shift as usize;
                    }
                }
                if (pair << 1) < all {
                    bits += 1;
                }
                bits += 1;
            } else {
                bits += MAX_BITS as usize;
            }
        }
        (bits + (DIV_BITS / 2 + 1)) / DIV_BITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_costs_count_seven_bits_per_byte() {
        assert_eq!(uint_cost(0), 1);
        assert_eq!(uint_cost(127), 1);
        assert_eq!(uint_cost(128), 2);
        assert_eq!(uint_cost(1 << 20), 3);
        assert_eq!(int_cost(-64), 2);
        assert_eq!(int_cost(i64::MIN), uint_cost(u64::MAX));
    }

    #[test]
    fn equal_bytes_cost_less_than_noise() {
        let old: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut near = old.clone();
        near[100] ^= 1;
        assert!(region_rle_cost(&near, &old) < 4);
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut d = Detector::new();
        d.add(&noise[..2048], None);
        assert!(d.cost(&near, Some(&old)) * 10 < d.cost(&noise[2048..], None));
    }
}
