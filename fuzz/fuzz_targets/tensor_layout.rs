//! Tensor layouts on hostile files: parsing never panics, and every span it keeps lies inside
//! the file, in order, without overlap; segments of any chunk cover it exactly.
#![no_main]

use ferry_shared::tensors::{Layout, segments};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(layout) = Layout::detect(data) else {
        return;
    };
    let mut end = 0;
    for span in &layout.spans {
        assert!(span.offset >= end && span.offset + span.len <= data.len() as u64);
        assert!(matches!(span.width, 1 | 2 | 4 | 8));
        end = span.offset + span.len;
    }
    let len = data.len().min(u32::MAX as usize) as u32;
    let cut = segments(&layout, 0, len, Some((&layout, 0, u64::from(len))));
    assert_eq!(
        cut.iter().map(|s| u64::from(s.len)).sum::<u64>(),
        u64::from(len)
    );
});
