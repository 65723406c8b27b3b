//! The client's handshake state machine, after its ClientHello, fed arbitrary frame sequences
//! (see `src/lib.rs` for the input format): it never panics and never reaches Established.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    minitls_fuzz::run_client(data);
});
