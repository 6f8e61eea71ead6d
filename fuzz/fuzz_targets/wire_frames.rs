//! Wire frames on hostile bytes: preambles, length prefixes and every message type decode to
//! a value or a refusal, never a panic or an oversized allocation.
#![no_main]

use ferry_shared::wire::{
    ChunkReply, FetchRequest, FetchResponse, Preamble, ToAgent, ToCoordinator, decode_body,
    frame_len,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(six) = <[u8; 6]>::try_from(data.get(..6).unwrap_or_default()) {
        let _ = Preamble::parse(six);
    }
    if let Ok(four) = <[u8; 4]>::try_from(data.get(..4).unwrap_or_default()) {
        let _ = frame_len(four);
    }
    let _ = decode_body::<ToAgent>("fuzz", data);
    let _ = decode_body::<ToCoordinator>("fuzz", data);
    let _ = decode_body::<FetchRequest>("fuzz", data);
    let _ = decode_body::<FetchResponse>("fuzz", data);
    let _ = decode_body::<ChunkReply>("fuzz", data);
});
