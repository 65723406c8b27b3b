//! Session tickets (protocol version 3): the server opens whatever a client presents as a
//! ticket. Opening arbitrary bytes never panics and never succeeds without the key; the
//! contents' decoder (what a ticket holds once decrypted) never panics, bounds every length
//! before allocating, and whatever it accepts re-encodes to the same bytes.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use minitls::handshake::{TicketContents, TicketKeys};
use minitls::wire::Codec;

static KEYS: LazyLock<TicketKeys> = LazyLock::new(|| TicketKeys::new(3600));

fuzz_target!(|data: &[u8]| {
    assert!(
        KEYS.open(data).is_none(),
        "a ticket opened without being sealed"
    );
    if let Ok(contents) = TicketContents::decode(data) {
        assert_eq!(contents.to_bytes(), data, "a non-canonical ticket encoding");
    }
});
