//! The record layer under fixed keys.
//!
//! Mode 0 (first byte even): the rest is a stream of frames (5-byte header, then the body it
//! declares, cut short at the end of the input) opened in order by one `Opener`, as a
//! connection would. Nothing panics, and a record that does open is exactly the one a
//! `Sealer` at the same position produces for that payload: nothing else authenticates.
//!
//! Mode 1 (first byte odd): `inner: u8 | flip: u16 | payload`. Seal then open gives back the
//! payload; the same record with bit `flip` (mod its length in bits) flipped fails to open.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minitls::record::{Opener, Sealer};
use minitls::wire::{FRAME_HEADER_LEN, TAG_LEN};
use minitls_fuzz::{MODE_STREAM, record_keys};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let keys = record_keys();
    if mode & 1 == MODE_STREAM {
        let mut opener = Opener::new(&keys);
        let mut sealer = Sealer::new(&keys);
        while let Some(header) = rest.first_chunk::<FRAME_HEADER_LEN>() {
            let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            let n = (declared as usize).min(rest.len() - FRAME_HEADER_LEN);
            let received = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + n];
            let mut body = received.to_vec();
            let header = *header;
            rest = &rest[FRAME_HEADER_LEN + n..];
            match opener.open(&header, &mut body) {
                Ok((inner, payload)) => {
                    assert_eq!(payload.len() + 1 + TAG_LEN, received.len());
                    let mut again = Vec::new();
                    sealer
                        .seal(inner, payload, &mut again)
                        .expect("an opened payload fits a record");
                    assert_eq!(again[..FRAME_HEADER_LEN], header, "header");
                    assert_eq!(&again[FRAME_HEADER_LEN..], received, "body");
                }
                // A connection ends at its first bad record.
                Err(_) => break,
            }
        }
    } else {
        let [inner, f0, f1, payload @ ..] = rest else {
            return;
        };
        let mut frame = Vec::new();
        Sealer::new(&keys)
            .seal(*inner, payload, &mut frame)
            .expect("the fuzzer's inputs are below the record maximum");
        assert_eq!(frame.len(), FRAME_HEADER_LEN + 1 + payload.len() + TAG_LEN);
        let open = |f: &[u8]| {
            let header: [u8; FRAME_HEADER_LEN] = f[..FRAME_HEADER_LEN].try_into().unwrap();
            let mut body = f[FRAME_HEADER_LEN..].to_vec();
            Opener::new(&keys)
                .open(&header, &mut body)
                .map(|(t, p)| (t, p.to_vec()))
        };
        assert_eq!(open(&frame), Ok((*inner, payload.to_vec())));
        let bit = u16::from_be_bytes([*f0, *f1]) as usize % (frame.len() * 8);
        frame[bit / 8] ^= 1 << (bit % 8);
        assert!(
            open(&frame).is_err(),
            "a record with bit {bit} flipped opened"
        );
    }
});
