//! Every message type of `src/wire.rs` decodes arbitrary bytes without panicking; whatever
//! decodes re-encodes to exactly the same bytes (the encodings are canonical: one value, one
//! encoding) and decodes again to the same value. Frame headers never accept a length above
//! their type's maximum.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use minitls::wire::{
    Alert, AppMessage, AppType, CertificateVerify, ClientCertificate, ClientHello, Codec, ErrorMsg,
    FRAME_HEADER_LEN, FileDone, FileEnd, FileStart, FileStatement, Finished, FrameHeader,
    FrameType, HaveEntry, ListEnd, ListEntry, Listing, ManifestEntry, NewTicket, PathMsg,
    PutStart, Request, ResumeHello, ServerHello, ServerResume, SkippedMsg, TextMsg, TreeEnd, TreeHave,
    TreeStart,
};

fn canonical<T: Codec + PartialEq + Debug>(data: &[u8]) {
    if let Ok(v) = T::decode(data) {
        let again = v.to_bytes();
        assert_eq!(
            again,
            data,
            "{} accepted a non-canonical encoding",
            std::any::type_name::<T>()
        );
        assert_eq!(T::decode(&again).as_ref(), Ok(&v));
    }
}

fuzz_target!(|data: &[u8]| {
    canonical::<ClientHello>(data);
    canonical::<ServerHello>(data);
    canonical::<ClientCertificate>(data);
    canonical::<CertificateVerify>(data);
    canonical::<Finished>(data);
    canonical::<Alert>(data);
    canonical::<Request>(data);
    canonical::<FileStart>(data);
    canonical::<FileStatement>(data);
    canonical::<FileEnd>(data);
    canonical::<ListEntry>(data);
    canonical::<Listing>(data);
    canonical::<TreeStart>(data);
    canonical::<PathMsg>(data);
    canonical::<SkippedMsg>(data);
    canonical::<FileDone>(data);
    canonical::<TreeEnd>(data);
    canonical::<ManifestEntry>(data);
    canonical::<ErrorMsg>(data);
    canonical::<PutStart>(data);
    canonical::<ListEnd>(data);
    canonical::<ResumeHello>(data);
    canonical::<ServerResume>(data);
    canonical::<NewTicket>(data);
    canonical::<HaveEntry>(data);
    canonical::<TreeHave>(data);
    canonical::<TextMsg>(data);

    // The typed message enum: type byte, then body. Whatever decodes carries that type and
    // re-encodes to the same body.
    if let Some((&b, body)) = data.split_first()
        && let Some(t) = AppType::from_u8(b)
        && let Ok(m) = AppMessage::decode(t, body)
    {
        assert_eq!(m.typ(), t);
        let mut again = Vec::new();
        m.encode(&mut again);
        assert_eq!(again, body, "{t:?} accepted a non-canonical encoding");
    }

    if let Some(raw) = data.first_chunk::<FRAME_HEADER_LEN>() {
        let declared = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
        match FrameHeader::parse(raw) {
            Ok(h) => {
                assert!(h.len <= h.typ.max_body(), "{h:?} accepted");
                assert_eq!(h.len, declared);
                assert_eq!(&FrameHeader::encode(h.typ, h.len), raw);
            }
            Err(_) => assert!(
                FrameType::from_u8(raw[0]).is_none_or(|t| declared > t.max_body()),
                "a valid header {raw:?} was refused"
            ),
        }
    }
    if let Some(&b) = data.first() {
        if let Some(t) = AppType::from_u8(b) {
            assert_eq!(t as u8, b);
        }
        if let Some(t) = FrameType::from_u8(b) {
            assert_eq!(t as u8, b);
        }
    }
});
