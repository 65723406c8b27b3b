//! PROTOCOL.md, byte by byte: every message is written here by hand exactly as the document
//! lays it out (field by field, comments named after the document's fields), decoded with the
//! library's public API, checked field by field, and encoded again to the same bytes. Digests
//! and signatures are recomputed from the documented inputs with the primitives themselves.
//! If one of these tests fails, the document or the code is wrong: fix one of them.

use std::fmt::Debug;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use minitls::crypto::{self, Secret32};
use minitls::handshake::{self, Established};
use minitls::record::{DirectionKeys, Opener, Sealer};
use minitls::sigfile::{ManifestHasher, SignedManifest, SignedStatement, statement_digest};
use minitls::testkit;
use minitls::wire::{
    Alert, AppType, CertificateVerify, ClientCertificate, ClientHello, Codec, DecodeError,
    EntryKind, ErrorCode, ErrorMsg, FRAME_HEADER_LEN, FileDone, FileEnd, FileStart, FileStatement,
    Finished, FrameHeader, FrameType, ListEntry, Listing, MAX_CERT_LEN, MAX_CHAIN_LEN,
    MAX_CHAIN_MSG_BODY, MAX_ERROR_TEXT, MAX_HANDSHAKE_BODY, MAX_LIST_ENTRIES_PER_MSG, MAX_PATH_LEN,
    MAX_RECORD_BODY, MAX_RECORD_PAYLOAD, MAX_RSA_BLOB_LEN, ManifestEntry, PROTOCOL_VERSION,
    PathMsg, PutStart, Request, RequestKind, ServerHello, SkippedMsg, TAG_LEN, TreeEnd, TreeStart,
};
use rsa::signature::Verifier;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// The document's notation, written out without the library's writers.
// ---------------------------------------------------------------------------------------------

/// `vec16<x>`: a big-endian u16 length, then the bytes.
fn vec16(b: &mut Vec<u8>, v: &[u8]) {
    b.extend((v.len() as u16).to_be_bytes());
    b.extend_from_slice(v);
}

/// Decodes `bytes`, compares with `expected`, and encodes it back to the very same bytes.
fn layout<T: Codec + PartialEq + Debug>(bytes: &[u8], expected: T) {
    let decoded = T::decode(bytes).unwrap_or_else(|e| panic!("documented bytes refused: {e}"));
    assert_eq!(decoded, expected);
    assert_eq!(
        decoded.to_bytes(),
        bytes,
        "encoding differs from the document"
    );
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

// ---------------------------------------------------------------------------------------------
// §1 Frames
// ---------------------------------------------------------------------------------------------

#[test]
fn frame_types_and_maxima_are_as_documented() {
    let table = [
        (1, FrameType::ClientHello, MAX_HANDSHAKE_BODY),
        (2, FrameType::ServerHello, MAX_CHAIN_MSG_BODY),
        (3, FrameType::ClientCertificate, MAX_CHAIN_MSG_BODY),
        (4, FrameType::ClientCertificateVerify, MAX_HANDSHAKE_BODY),
        (5, FrameType::ClientFinished, MAX_HANDSHAKE_BODY),
        (6, FrameType::ServerCertificateVerify, MAX_HANDSHAKE_BODY),
        (7, FrameType::ServerFinished, MAX_HANDSHAKE_BODY),
        (8, FrameType::ResumeHello, MAX_HANDSHAKE_BODY),
        (9, FrameType::ServerResume, MAX_HANDSHAKE_BODY),
        (0x15, FrameType::Alert, 1),
        (0x17, FrameType::Record, MAX_RECORD_BODY),
        (0x18, FrameType::EarlyRecord, MAX_RECORD_BODY),
    ];
    for b in 0..=255u8 {
        let want = table.iter().find(|(t, _, _)| *t == b);
        assert_eq!(FrameType::from_u8(b), want.map(|(_, f, _)| *f), "type {b}");
    }
    for (byte, typ, max) in table {
        assert_eq!(typ as u8, byte);
        assert_eq!(typ.max_body(), max);
    }
    assert_eq!(FRAME_HEADER_LEN, 5);
    assert_eq!(MAX_CERT_LEN, 16_384);
    assert_eq!(MAX_RSA_BLOB_LEN, 1_024);
    assert_eq!(MAX_HANDSHAKE_BODY, 18_496);
    assert_eq!(MAX_CHAIN_LEN, 3);
    assert_eq!(MAX_CHAIN_MSG_BODY, 67_656);
    assert_eq!(MAX_RECORD_PAYLOAD, 262_144);
    assert_eq!(TAG_LEN, 16);
    assert_eq!(MAX_RECORD_BODY, 262_161);
    assert_eq!(MAX_PATH_LEN, 4_096);
    assert_eq!(MAX_ERROR_TEXT, 1_024);
    assert_eq!(MAX_LIST_ENTRIES_PER_MSG, 1_024);
}

#[test]
fn a_frame_header_is_a_type_byte_and_a_big_endian_u32_length() {
    // type: u8 | length: u32
    let h = [0x17, 0x00, 0x04, 0x00, 0x11];
    assert_eq!(
        FrameHeader::parse(&h).unwrap(),
        FrameHeader {
            typ: FrameType::Record,
            len: 0x0004_0011
        }
    );
    assert_eq!(FrameHeader::encode(FrameType::Record, 0x0004_0011), h);
    // One byte over the type's maximum is refused on the header alone.
    let over = [0x17, 0x00, 0x04, 0x00, 0x12];
    assert!(matches!(
        FrameHeader::parse(&over),
        Err(DecodeError::TooLong { .. })
    ));
    assert!(FrameHeader::parse(&[0x15, 0, 0, 0, 2]).is_err());
    assert_eq!(
        FrameHeader::parse(&[0x0a, 0, 0, 0, 0]),
        Err(DecodeError::UnknownType(10))
    );
}

// ---------------------------------------------------------------------------------------------
// §2 Handshake bodies and alerts
// ---------------------------------------------------------------------------------------------

#[test]
fn client_hello_is_version_random_and_key_share() {
    let mut b = vec![];
    b.extend(3u16.to_be_bytes()); // version u16 (=3)
    b.extend([0x11; 32]); // random_c [32]
    b.extend([0x22; 32]); // x25519_c [32]
    assert_eq!(b.len(), 66);
    assert_eq!(PROTOCOL_VERSION, 3);
    layout(
        &b,
        ClientHello {
            version: 3,
            random: [0x11; 32],
            x25519: [0x22; 32],
        },
    );
}

#[test]
fn server_hello_is_version_random_key_share_and_certificate() {
    let cert = vec![0x30; 700];
    let mut b = vec![];
    b.extend(1u16.to_be_bytes()); // version u16
    b.extend([0x33; 32]); // random_s [32]
    b.extend([0x44; 32]); // x25519_s [32]
    vec16(&mut b, &cert); // vec16<cert_s DER> (≤ MAX_CERT_LEN)
    let plain = b.clone();
    b.push(0); // chain count u8 (≤ MAX_CHAIN_LEN): no intermediates
    layout(
        &b,
        ServerHello {
            version: 1,
            random: [0x33; 32],
            x25519: [0x44; 32],
            certificate: cert.clone(),
            chain: vec![],
        },
    );
    // With intermediates: count, then each vec16<DER>, issuer first.
    let mut with_chain = plain.clone();
    with_chain.push(2);
    vec16(&mut with_chain, &[0x31; 40]);
    vec16(&mut with_chain, &[0x32; 50]);
    layout(
        &with_chain,
        ServerHello {
            version: 1,
            random: [0x33; 32],
            x25519: [0x44; 32],
            certificate: cert.clone(),
            chain: vec![vec![0x31; 40], vec![0x32; 50]],
        },
    );
    // More than MAX_CHAIN_LEN intermediates is refused from the count byte alone.
    let mut too_many = plain.clone();
    too_many.push(MAX_CHAIN_LEN as u8 + 1);
    assert!(matches!(
        ServerHello::decode(&too_many),
        Err(DecodeError::InvalidValue(_))
    ));
    // A hello without the chain count (the old layout) is truncated.
    assert!(ServerHello::decode(&plain).is_err());
    // MAX_CERT_LEN is the limit of the certificate field.
    let mut long = b[..66].to_vec();
    vec16(&mut long, &vec![0; MAX_CERT_LEN + 1]);
    assert!(matches!(
        ServerHello::decode(&long),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn client_certificate_is_certificate_chain_then_wrapped_secret() {
    let mut b = vec![];
    vec16(&mut b, &[0x30; 800]); // vec16<cert_c DER> (≤ MAX_CERT_LEN)
    b.push(1); // chain count u8 (≤ MAX_CHAIN_LEN)
    vec16(&mut b, &[0x31; 60]); // vec16<intermediate DER> (≤ MAX_CERT_LEN)
    vec16(&mut b, &[0x55; 256]); // vec16<wrapped> (≤ MAX_RSA_BLOB_LEN)
    layout(
        &b,
        ClientCertificate {
            certificate: vec![0x30; 800],
            chain: vec![vec![0x31; 60]],
            wrapped_secret: vec![0x55; 256],
        },
    );
    let mut long = vec![];
    vec16(&mut long, &[0x30; 800]);
    long.push(0);
    vec16(&mut long, &vec![0x55; MAX_RSA_BLOB_LEN + 1]);
    assert!(ClientCertificate::decode(&long).is_err());
    let mut long = vec![];
    vec16(&mut long, &[0x30; 800]);
    long.push(1);
    vec16(&mut long, &vec![0x31; MAX_CERT_LEN + 1]);
    assert!(ClientCertificate::decode(&long).is_err());
}

#[test]
fn certificate_verify_is_a_signature_and_finished_is_32_bytes() {
    let mut b = vec![];
    vec16(&mut b, &[0x66; 384]); // vec16<signature> (≤ MAX_RSA_BLOB_LEN)
    layout(
        &b,
        CertificateVerify {
            signature: vec![0x66; 384],
        },
    );
    // mac [32], no length prefix
    layout(&[0x77; 32], Finished { mac: [0x77; 32] });
    assert!(Finished::decode(&[0x77; 31]).is_err());
    assert!(Finished::decode(&[0x77; 33]).is_err());
}

#[test]
fn alerts_are_one_byte_codes_1_to_12() {
    let codes = [
        (1, Alert::BadCertificate),
        (2, Alert::HandshakeFailure),
        (3, Alert::ProtocolError),
        (4, Alert::UnsupportedVersion),
        (5, Alert::Busy),
        (6, Alert::Timeout),
        (7, Alert::CertificateExpired),
        (8, Alert::CertificateRevoked),
        (9, Alert::CertificateWrongRole),
        (10, Alert::UnknownCa),
        (11, Alert::DroppedByOperator),
        (12, Alert::SessionTimeLimit),
    ];
    for (code, alert) in codes {
        layout(&[code], alert); // code u8
    }
    for bad in [0u8, 13, 0x15, 0xff] {
        assert_eq!(
            Alert::decode(&[bad]),
            Err(DecodeError::InvalidValue("alert"))
        );
    }
    assert!(Alert::decode(&[]).is_err());
}

// ---------------------------------------------------------------------------------------------
// §4 Application messages
// ---------------------------------------------------------------------------------------------

#[test]
fn application_message_types_are_numbered_as_documented() {
    let table = [
        (1, AppType::Request),
        (2, AppType::FileStart),
        (3, AppType::Data),
        (4, AppType::FileEnd),
        (5, AppType::Listing),
        (6, AppType::ListEnd),
        (7, AppType::Error),
        (8, AppType::Close),
        (9, AppType::TreeStart),
        (10, AppType::TreeDir),
        (11, AppType::FileDone),
        (12, AppType::Skipped),
        (13, AppType::TreeEnd),
        (14, AppType::Put),
        (15, AppType::PutReady),
        (16, AppType::PutDone),
        (17, AppType::Say),
        (18, AppType::Ping),
        (19, AppType::Pong),
        (20, AppType::Notice),
        (21, AppType::Goodbye),
        (24, AppType::TreeHave),
        (27, AppType::NewTicket),
    ];
    for b in 0..=255u8 {
        let want = table.iter().find(|(t, _)| *t == b).map(|(_, a)| *a);
        assert_eq!(AppType::from_u8(b), want, "type {b}");
    }
    for (b, t) in table {
        assert_eq!(t as u8, b);
    }
}

#[test]
fn request_get_with_a_resume_offset_and_prefix_digest() {
    let prefix = sha256(b"the first bytes");
    let mut b = vec![];
    b.push(1); // kind u8: 1 Get
    b.push(0); // recursive u8: 0
    b.extend(15u64.to_be_bytes()); // offset u64
    b.extend(prefix); // prefix_sha256 [32]
    vec16(&mut b, "docs/report é.pdf".as_bytes()); // vec16<path> (≤ MAX_PATH_LEN)
    assert_eq!(b.len(), 44 + "docs/report é.pdf".len());
    layout(
        &b,
        Request {
            kind: RequestKind::Get,
            recursive: false,
            offset: 15,
            prefix_sha256: prefix,
            path: "docs/report é.pdf".into(),
        },
    );
}

#[test]
fn request_get_of_a_tree_and_list_of_the_root() {
    let mut b = vec![];
    b.push(1); // kind: Get
    b.push(1); // recursive: 1
    b.extend(0u64.to_be_bytes()); // offset: 0
    b.extend([0u8; 32]); // prefix_sha256: zeros when offset is 0
    vec16(&mut b, b"projects/site"); // path
    layout(
        &b,
        Request {
            kind: RequestKind::Get,
            recursive: true,
            offset: 0,
            prefix_sha256: [0; 32],
            path: "projects/site".into(),
        },
    );

    let mut b = vec![];
    b.push(2); // kind: 2 List
    b.push(1); // recursive: 1
    b.extend(0u64.to_be_bytes()); // offset
    b.extend([0u8; 32]); // prefix_sha256
    vec16(&mut b, b""); // path: "" is the root
    layout(
        &b,
        Request {
            kind: RequestKind::List,
            recursive: true,
            offset: 0,
            prefix_sha256: [0; 32],
            path: String::new(),
        },
    );
}

#[test]
fn request_values_outside_the_documented_ones_are_refused() {
    let req = |kind: u8, recursive: u8| {
        let mut b = vec![kind, recursive];
        b.extend(0u64.to_be_bytes());
        b.extend([0u8; 32]);
        vec16(&mut b, b"a");
        b
    };
    assert_eq!(
        Request::decode(&req(3, 0)),
        Err(DecodeError::InvalidValue("request kind"))
    );
    assert_eq!(
        Request::decode(&req(0, 0)),
        Err(DecodeError::InvalidValue("request kind"))
    );
    assert_eq!(
        Request::decode(&req(1, 2)),
        Err(DecodeError::InvalidValue("recursive flag"))
    );
    // The layout PROTOCOL.md used to show (no prefix_sha256) does not decode.
    let mut old = vec![1, 0];
    old.extend(0u64.to_be_bytes());
    vec16(&mut old, b"a.txt");
    assert!(Request::decode(&old).is_err());
    // Paths: at most MAX_PATH_LEN bytes, UTF-8.
    let mut long = req(1, 0);
    long.truncate(42);
    vec16(&mut long, &vec![b'a'; MAX_PATH_LEN + 1]);
    assert!(matches!(
        Request::decode(&long),
        Err(DecodeError::TooLong { .. })
    ));
    let mut bad = req(1, 0);
    bad.truncate(42);
    vec16(&mut bad, &[0xc3, 0x28]);
    assert_eq!(
        Request::decode(&bad),
        Err(DecodeError::InvalidValue("path"))
    );
}

#[test]
fn file_start_is_path_size_mtime_offset() {
    let mut b = vec![];
    vec16(&mut b, b"docs/report.pdf"); // vec16<path>
    b.extend(12_345u64.to_be_bytes()); // size u64
    b.extend((-2i64).to_be_bytes()); // mtime i64 (two's complement)
    b.extend(4_096u64.to_be_bytes()); // offset u64
    layout(
        &b,
        FileStart {
            path: "docs/report.pdf".into(),
            size: 12_345,
            mtime: -2,
            offset: 4_096,
        },
    );
}

#[test]
fn file_end_is_the_statement_then_the_signature() {
    let digest = sha256(b"content");
    let mut b = vec![];
    // FileStatement
    vec16(&mut b, b"docs/report.pdf"); // vec16<path>
    b.extend(7u64.to_be_bytes()); // size u64
    b.extend(digest); // sha256 [32]
    b.extend(1_795_000_000i64.to_be_bytes()); // signed_at i64
    // then
    vec16(&mut b, &[0x99; 256]); // vec16<signature> (≤ MAX_RSA_BLOB_LEN)
    let statement = FileStatement {
        path: "docs/report.pdf".into(),
        size: 7,
        sha256: digest,
        signed_at: 1_795_000_000,
    };
    layout(
        &b,
        FileEnd {
            statement: statement.clone(),
            signature: vec![0x99; 256],
        },
    );
    layout(&b[..2 + 15 + 8 + 32 + 8], statement);
}

#[test]
fn list_end_is_the_count_of_names_left_out() {
    use minitls::wire::{AppMessage, ListEnd};
    let b = 3u32.to_be_bytes(); // hidden u32
    layout(&b, ListEnd { hidden: 3 });
    assert_eq!(
        AppMessage::decode(AppType::ListEnd, &b),
        Ok(AppMessage::ListEnd(ListEnd { hidden: 3 }))
    );
    assert!(AppMessage::decode(AppType::ListEnd, &[]).is_err());
}

#[test]
fn listing_is_a_count_then_entries_of_kind_size_mtime_path() {
    let mut b = vec![];
    b.extend(2u16.to_be_bytes()); // count u16 (≤ MAX_LIST_ENTRIES_PER_MSG)
    // ListEntry 1
    b.push(2); // kind u8: 2 Dir
    b.extend(0u64.to_be_bytes()); // size u64: 0 for directories
    b.extend(1_700_000_000i64.to_be_bytes()); // mtime i64
    vec16(&mut b, b"projects/site"); // vec16<path>
    // ListEntry 2
    b.push(1); // kind u8: 1 File
    b.extend(1_200u64.to_be_bytes()); // size
    b.extend(1_700_000_001i64.to_be_bytes()); // mtime
    vec16(&mut b, b"projects/site/a b.txt"); // path
    layout(
        &b,
        Listing {
            entries: vec![
                ListEntry {
                    kind: EntryKind::Dir,
                    size: 0,
                    mtime: 1_700_000_000,
                    path: "projects/site".into(),
                },
                ListEntry {
                    kind: EntryKind::File,
                    size: 1_200,
                    mtime: 1_700_000_001,
                    path: "projects/site/a b.txt".into(),
                },
            ],
        },
    );
    // An empty batch is two zero bytes; more than 1,024 entries or another kind are refused.
    layout(&[0, 0], Listing { entries: vec![] });
    assert!(matches!(
        Listing::decode(&1_025u16.to_be_bytes()),
        Err(DecodeError::TooLong { .. })
    ));
    let mut bad_kind = vec![0, 1, 3];
    bad_kind.extend([0u8; 16]);
    vec16(&mut bad_kind, b"x");
    assert_eq!(
        Listing::decode(&bad_kind),
        Err(DecodeError::InvalidValue("entry kind"))
    );
}

#[test]
fn tree_have_is_a_count_then_path_size_and_digest_of_each_file_held() {
    use minitls::wire::{HaveEntry, TreeHave};
    let digest = sha256(b"the bytes held");
    let mut b = vec![];
    b.extend(2u16.to_be_bytes()); // count u16 (<= MAX_HAVE_ENTRIES_PER_MSG)
    // HaveEntry 1
    vec16(&mut b, b"sub/c.bin"); // vec16<path>, relative to the requested directory
    b.extend(524_288u64.to_be_bytes()); // size u64: bytes held (all of it, or its start)
    b.extend(digest); // sha256 [32] of those bytes
    // HaveEntry 2
    vec16(&mut b, b"a b.txt");
    b.extend(1u64.to_be_bytes());
    b.extend([0x5a; 32]);
    layout(
        &b,
        TreeHave {
            entries: vec![
                HaveEntry {
                    path: "sub/c.bin".into(),
                    size: 524_288,
                    sha256: digest,
                },
                HaveEntry {
                    path: "a b.txt".into(),
                    size: 1,
                    sha256: [0x5a; 32],
                },
            ],
        },
    );
    layout(&[0, 0], TreeHave { entries: vec![] });
    assert!(matches!(
        TreeHave::decode(&1_025u16.to_be_bytes()),
        Err(DecodeError::TooLong { .. })
    ));
    // As an application message: type 24, then the batch.
    use minitls::wire::AppMessage;
    assert!(matches!(
        AppMessage::decode(AppType::TreeHave, &b),
        Ok(AppMessage::TreeHave(h)) if h.entries.len() == 2
    ));
}

#[test]
fn put_is_kind_force_path_size_mtime_and_its_answers_are_empty_or_a_digest() {
    let mut b = vec![1u8]; // kind u8 (1 = file)
    b.push(1); // force u8 (0 or 1)
    vec16(&mut b, b"uploads/alice/r.pdf"); // vec16<path>
    b.extend(12_345u64.to_be_bytes()); // size u64
    b.extend(1_795_000_000u64.to_be_bytes()); // mtime i64
    layout(
        &b,
        PutStart {
            kind: EntryKind::File,
            force: true,
            path: "uploads/alice/r.pdf".into(),
            size: 12_345,
            mtime: 1_795_000_000,
        },
    );
    let mut bad = b.clone();
    bad[1] = 2;
    assert_eq!(
        PutStart::decode(&bad),
        Err(DecodeError::InvalidValue("force flag"))
    );
    // PutReady is empty; PutDone is a FileDone (sha256 [32]).
    use minitls::wire::AppMessage;
    assert_eq!(
        AppMessage::decode(AppType::PutReady, &[]),
        Ok(AppMessage::PutReady)
    );
    assert_eq!(
        AppMessage::decode(AppType::PutDone, &[7; 32]),
        Ok(AppMessage::PutDone(FileDone { sha256: [7; 32] }))
    );
}

#[test]
fn say_and_notice_are_text_ping_and_pong_are_empty_goodbye_is_an_alert_code() {
    use minitls::wire::{AppMessage, MAX_SAY_LEN, TextMsg};
    let mut b = vec![];
    vec16(&mut b, "hi \u{1b}[2J".as_bytes()); // vec16<text> (UTF-8, ≤ MAX_SAY_LEN)
    let text = TextMsg {
        text: "hi \u{1b}[2J".into(),
    };
    layout(&b, text.clone());
    assert_eq!(
        AppMessage::decode(AppType::Say, &b),
        Ok(AppMessage::Say(text.clone()))
    );
    assert_eq!(
        AppMessage::decode(AppType::Notice, &b),
        Ok(AppMessage::Notice(text))
    );
    assert_eq!(MAX_SAY_LEN, 1024);
    let mut long = vec![];
    vec16(&mut long, &[b'a'; 1025]);
    assert!(matches!(
        TextMsg::decode(&long),
        Err(DecodeError::TooLong { .. })
    ));
    assert_eq!(AppMessage::decode(AppType::Ping, &[]), Ok(AppMessage::Ping));
    assert_eq!(AppMessage::decode(AppType::Pong, &[]), Ok(AppMessage::Pong));
    assert_eq!(
        AppMessage::decode(AppType::Goodbye, &[11]), // alert u8
        Ok(AppMessage::Goodbye(Alert::DroppedByOperator))
    );
    assert_eq!(
        AppMessage::decode(AppType::Goodbye, &[12]),
        Ok(AppMessage::Goodbye(Alert::SessionTimeLimit))
    );
}

#[test]
fn error_is_a_code_then_text() {
    let codes = [
        (1, ErrorCode::NotFound),
        (2, ErrorCode::PathRefused),
        (3, ErrorCode::IsDirectory),
        (4, ErrorCode::ReadFailed),
        (5, ErrorCode::BadRequest),
        (6, ErrorCode::Exists),
        (7, ErrorCode::TooLarge),
        (8, ErrorCode::WriteFailed),
        (9, ErrorCode::IntegrityFailed),
    ];
    for (code, name) in codes {
        let mut b = vec![code]; // code u8
        vec16(&mut b, b"a.txt: no such file or directory"); // vec16<text> (≤ MAX_ERROR_TEXT)
        layout(
            &b,
            ErrorMsg {
                code: name,
                text: "a.txt: no such file or directory".into(),
            },
        );
    }
    for bad in [0u8, 10] {
        let mut b = vec![bad];
        vec16(&mut b, b"x");
        assert_eq!(
            ErrorMsg::decode(&b),
            Err(DecodeError::InvalidValue("error code"))
        );
    }
    // The sender cuts a long text at MAX_ERROR_TEXT bytes, on a character boundary.
    let long = "é".repeat(MAX_ERROR_TEXT);
    let sent = ErrorMsg {
        code: ErrorCode::ReadFailed,
        text: long,
    }
    .to_bytes();
    assert_eq!(&sent[1..3], &(MAX_ERROR_TEXT as u16).to_be_bytes());
    assert_eq!(ErrorMsg::decode(&sent).unwrap().text, "é".repeat(512));
}

#[test]
fn tree_start_is_root_then_three_counts() {
    let mut b = vec![];
    vec16(&mut b, b"projects/site"); // vec16<root> (≤ MAX_PATH_LEN)
    b.extend(2u64.to_be_bytes()); // files u64
    b.extend(1u64.to_be_bytes()); // dirs u64
    b.extend(4_271u64.to_be_bytes()); // bytes u64
    layout(
        &b,
        TreeStart {
            root: "projects/site".into(),
            files: 2,
            dirs: 1,
            bytes: 4_271,
        },
    );
}

#[test]
fn tree_dir_is_a_path_and_file_done_a_digest() {
    let mut b = vec![];
    vec16(&mut b, b"css"); // vec16<path>
    layout(&b, PathMsg { path: "css".into() });
    let d = sha256(b"body { }");
    layout(&d, FileDone { sha256: d }); // sha256 [32]
    assert!(FileDone::decode(&d[..31]).is_err());
}

#[test]
fn skipped_is_a_path_then_a_reason() {
    let mut b = vec![];
    vec16(&mut b, b"link"); // vec16<path> (≤ MAX_PATH_LEN)
    vec16(&mut b, b"symbolic link, not followed"); // vec16<reason> (≤ MAX_ERROR_TEXT)
    layout(
        &b,
        SkippedMsg {
            path: "link".into(),
            reason: "symbolic link, not followed".into(),
        },
    );
    let mut long = vec![];
    vec16(&mut long, b"x");
    vec16(&mut long, &vec![b'r'; MAX_ERROR_TEXT + 1]);
    assert!(SkippedMsg::decode(&long).is_err());
}

#[test]
fn tree_end_is_signing_time_then_signature() {
    let mut b = vec![];
    b.extend(1_795_000_000i64.to_be_bytes()); // signed_at i64
    vec16(&mut b, &[0xab; 384]); // vec16<signature> (≤ MAX_RSA_BLOB_LEN)
    layout(
        &b,
        TreeEnd {
            signed_at: 1_795_000_000,
            signature: vec![0xab; 384],
        },
    );
}

#[test]
fn manifest_entry_is_kind_path_size_digest() {
    let d = sha256(b"x");
    let mut b = vec![];
    b.push(1); // kind u8: 1 file
    vec16(&mut b, b"css/main.css"); // vec16<path>
    b.extend(1u64.to_be_bytes()); // size u64
    b.extend(d); // sha256 [32]
    layout(
        &b,
        ManifestEntry {
            kind: EntryKind::File,
            path: "css/main.css".into(),
            size: 1,
            sha256: d,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// §4.7 Signatures and digests
// ---------------------------------------------------------------------------------------------

#[test]
fn context_strings_and_labels_are_verbatim() {
    assert_eq!(
        crypto::CLIENT_SIGNATURE_CONTEXT,
        b"minitls v1, client CertificateVerify"
    );
    assert_eq!(
        crypto::SERVER_SIGNATURE_CONTEXT,
        b"minitls v1, server CertificateVerify"
    );
    assert_eq!(
        crypto::FILE_SIGNATURE_CONTEXT,
        b"minitls v1, signed file statement"
    );
    assert_eq!(
        crypto::MANIFEST_SIGNATURE_CONTEXT,
        b"minitls v1, signed tree manifest"
    );
    assert_eq!(crypto::OAEP_LABEL, b"minitls v1 key transport");
}

#[test]
fn the_statement_digest_is_sha256_of_the_encoded_statement() {
    let content = sha256(b"hello\n");
    let mut b = vec![];
    vec16(&mut b, b"docs/hello.txt"); // vec16<path>
    b.extend(6u64.to_be_bytes()); // size u64
    b.extend(content); // sha256 [32]
    b.extend(1_795_000_000i64.to_be_bytes()); // signed_at i64
    let st = FileStatement {
        path: "docs/hello.txt".into(),
        size: 6,
        sha256: content,
        signed_at: 1_795_000_000,
    };
    assert_eq!(statement_digest(&st), sha256(&b));
}

#[test]
fn the_manifest_digest_is_root_entries_count_and_time() {
    let main_css = sha256(b"body { }");
    let index = sha256(b"<html>");
    let mut b = vec![];
    vec16(&mut b, b"projects/site"); // vec16<root>
    // entry 1: a directory
    b.push(2); // kind u8: 2 dir
    vec16(&mut b, b"css"); // vec16<path>
    b.extend(0u64.to_be_bytes()); // size u64: 0
    b.extend([0u8; 32]); // sha256 [32]: zeros
    // entry 2: a file
    b.push(1); // kind: 1 file
    vec16(&mut b, b"css/main.css"); // path
    b.extend(8u64.to_be_bytes()); // size
    b.extend(main_css); // sha256
    // entry 3: a file
    b.push(1);
    vec16(&mut b, b"index.html");
    b.extend(6u64.to_be_bytes());
    b.extend(index);
    // trailer
    b.extend(3u64.to_be_bytes()); // n u64
    b.extend((-5i64).to_be_bytes()); // signed_at i64
    let want = sha256(&b);

    let entries = vec![
        ManifestEntry {
            kind: EntryKind::Dir,
            path: "css".into(),
            size: 0,
            sha256: [0; 32],
        },
        ManifestEntry {
            kind: EntryKind::File,
            path: "css/main.css".into(),
            size: 8,
            sha256: main_css,
        },
        ManifestEntry {
            kind: EntryKind::File,
            path: "index.html".into(),
            size: 6,
            sha256: index,
        },
    ];
    let mut h = ManifestHasher::new("projects/site");
    for e in &entries {
        h.add(e);
    }
    assert_eq!(h.finish(-5), want);
    let kept = SignedManifest {
        root: "projects/site".into(),
        signed_at: -5,
        entries,
        signature: vec![],
        signer_der: vec![],
        signer_chain: vec![],
    };
    assert_eq!(kept.digest(), want);
    // An empty tree: root, then n = 0 and the time.
    let mut e = vec![];
    vec16(&mut e, b"empty");
    e.extend(0u64.to_be_bytes());
    e.extend(7i64.to_be_bytes());
    assert_eq!(ManifestHasher::new("empty").finish(7), sha256(&e));
}

/// `M = 0x20 × 64 || context || 0x00 || H`, as the document writes it.
fn signed_message(context: &str, h: &[u8; 32]) -> Vec<u8> {
    let mut m = vec![0x20; 64];
    m.extend_from_slice(context.as_bytes());
    m.push(0);
    m.extend_from_slice(h);
    m
}

fn pss_verifies(key: &rsa::RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    let sig = rsa::pss::Signature::try_from(signature).expect("a PSS signature's size");
    rsa::pss::VerifyingKey::<Sha256>::new(key.clone())
        .verify(message, &sig)
        .is_ok()
}

#[test]
fn file_and_manifest_signatures_are_pss_over_the_documented_message() {
    let server = &testkit::pki().server;
    let public = rsa::RsaPublicKey::from(server.key.rsa().unwrap());
    let h = sha256(b"some digest input");
    for (context, name) in [
        (
            crypto::FILE_SIGNATURE_CONTEXT,
            "minitls v1, signed file statement",
        ),
        (
            crypto::MANIFEST_SIGNATURE_CONTEXT,
            "minitls v1, signed tree manifest",
        ),
    ] {
        let sig = crypto::sign(server.signer(), context, &h).unwrap();
        assert!(pss_verifies(&public, &signed_message(name, &h), &sig));
        assert!(!pss_verifies(
            &public,
            &signed_message(name, &[0; 32]),
            &sig
        ));
        // And the library accepts a signature made over the documented message directly.
        let by_hand: Box<[u8]> = rsa::signature::RandomizedSigner::sign_with_rng(
            &rsa::pss::SigningKey::<Sha256>::new(server.key.rsa().unwrap().clone()),
            &mut rand::rng(),
            &signed_message(name, &h),
        )
        .into();
        assert!(crypto::verify(
            &minitls::pki::PeerKey::Rsa(public.clone()),
            context,
            &h,
            &by_hand
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// §2 A real handshake, checked against the documented transcript and signatures
// ---------------------------------------------------------------------------------------------

/// Splits concatenated frames into (type, body, whole frame).
fn split_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let mut out = vec![];
    while !bytes.is_empty() {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let frame = &bytes[..5 + len];
        out.push((frame[0], frame[5..].to_vec(), frame.to_vec()));
        bytes = &bytes[5 + len..];
    }
    out
}

#[test]
fn a_handshake_follows_the_documented_flights_transcript_and_signatures() {
    let p = testkit::pki();
    let (c1, hello) = handshake::client_start(p.client_config());
    let s1 = handshake::server_start(p.server_config());
    let f1 = split_frames(&hello);
    assert_eq!(f1.len(), 1);
    assert_eq!(f1[0].0, 1); // ClientHello
    let (s2, flight2) = s1.handle(FrameType::ClientHello, &f1[0].1).unwrap();
    let f2 = split_frames(&flight2);
    assert_eq!(f2.iter().map(|f| f.0).collect::<Vec<_>>(), [2]);
    let (c2, flight3) = c1.handle(FrameType::ServerHello, &f2[0].1).unwrap();
    let f3 = split_frames(&flight3);
    assert_eq!(f3.iter().map(|f| f.0).collect::<Vec<_>>(), [3, 4, 5]);
    let s3 = s2.handle(FrameType::ClientCertificate, &f3[0].1).unwrap();
    let s4 = s3
        .handle(FrameType::ClientCertificateVerify, &f3[1].1)
        .unwrap();
    let (server_end, flight4): (Established, _) =
        s4.handle(FrameType::ClientFinished, &f3[2].1).unwrap();
    let f4 = split_frames(&flight4);
    assert_eq!(f4.iter().map(|f| f.0).collect::<Vec<_>>(), [6, 7]);
    let c3 = c2
        .handle(FrameType::ServerCertificateVerify, &f4[0].1)
        .unwrap();
    let client_end = c3.handle(FrameType::ServerFinished, &f4[1].1).unwrap();

    // Bodies decode as documented.
    let ch = ClientHello::decode(&f1[0].1).unwrap();
    assert_eq!(ch.version, 3);
    let sh = ServerHello::decode(&f2[0].1).unwrap();
    assert_eq!(sh.certificate, p.server.cert_der);
    let cc = ClientCertificate::decode(&f3[0].1).unwrap();
    assert_eq!(cc.certificate, p.client.cert_der);
    let cv_c = CertificateVerify::decode(&f3[1].1).unwrap();
    let cv_s = CertificateVerify::decode(&f4[0].1).unwrap();

    // TH(n): SHA-256 over the whole frames, header and body, through message n.
    let frames: Vec<&[u8]> = [&f1[0], &f2[0], &f3[0], &f3[1], &f3[2], &f4[0]]
        .iter()
        .map(|f| f.2.as_slice())
        .collect();
    let th = |n: usize| sha256(&frames[..n].concat());
    let th_client_certificate = th(3);
    let th_client_certificate_verify = th(4);

    // sig_c over TH(ClientCertificate), sig_s over TH(ClientCertificateVerify).
    let client_pub = rsa::RsaPublicKey::from(p.client.key.rsa().unwrap());
    let server_pub = rsa::RsaPublicKey::from(p.server.key.rsa().unwrap());
    assert!(pss_verifies(
        &client_pub,
        &signed_message(
            "minitls v1, client CertificateVerify",
            &th_client_certificate
        ),
        &cv_c.signature
    ));
    assert!(pss_verifies(
        &server_pub,
        &signed_message(
            "minitls v1, server CertificateVerify",
            &th_client_certificate_verify
        ),
        &cv_s.signature
    ));

    // wrapped = RSA-OAEP(SHA-256, label "minitls v1 key transport") of a 32-byte secret.
    let secret = p
        .server
        .key
        .rsa()
        .unwrap()
        .decrypt(
            rsa::Oaep::<Sha256>::new_with_label(b"minitls v1 key transport".as_slice()),
            &cc.wrapped_secret,
        )
        .unwrap();
    assert_eq!(secret.len(), 32);

    // The Finished MACs are HMACs under keys that cannot be derived again here without the
    // X25519 secret (see the key schedule test); both ends agree, each one's send keys being
    // the other's receive keys.
    assert_eq!(server_end.send.key, client_end.recv.key);
    assert_eq!(server_end.recv.iv, client_end.send.iv);
}

#[test]
fn the_key_schedule_is_hkdf_with_the_documented_labels() {
    let transport = [0x01; 32];
    let dh = [0x02; 32];
    let th = [0x03; 32];
    let ks =
        minitls::handshake::key_schedule::derive_keys(&Secret32(transport), &Secret32(dh), &th);
    // PRK = HKDF-Extract(salt = TH(ClientCertificateVerify), IKM = secret || dh)
    let ikm = [transport, dh].concat();
    let hk = Hkdf::<Sha256>::new(Some(&th), &ikm);
    let expand = |label: &str, n: usize| {
        let mut out = vec![0u8; n];
        hk.expand(label.as_bytes(), &mut out).unwrap();
        out
    };
    assert_eq!(ks.c2s.key.to_vec(), expand("minitls v1 c2s key", 32));
    assert_eq!(ks.c2s.iv.to_vec(), expand("minitls v1 c2s iv", 12));
    assert_eq!(ks.s2c.key.to_vec(), expand("minitls v1 s2c key", 32));
    assert_eq!(ks.s2c.iv.to_vec(), expand("minitls v1 s2c iv", 12));
    let fk_c = expand("minitls v1 client finished", 32);
    let fk_s = expand("minitls v1 server finished", 32);
    assert_eq!(ks.client_finished.0.to_vec(), fk_c);
    assert_eq!(ks.server_finished.0.to_vec(), fk_s);
    // mac = HMAC-SHA256(fk, TH)
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&fk_c).unwrap();
    m.update(&th);
    let mac: [u8; 32] = m.finalize().into_bytes().into();
    assert_eq!(
        minitls::handshake::key_schedule::finished_mac(&ks.client_finished, &th),
        mac
    );
}

// ---------------------------------------------------------------------------------------------
// §3 Records
// ---------------------------------------------------------------------------------------------

#[test]
fn a_record_is_aes_gcm_over_type_and_payload_with_the_header_as_aad() {
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};

    let key = [0x42; 32];
    let iv = [0x24; 12];
    let cipher = <Aes256Gcm as aes_gcm::aead::KeyInit>::new(&key.into());
    let mut by_hand = vec![];
    let messages: [(u8, &[u8]); 3] = [(1, b"request body"), (3, b"file bytes"), (8, b"")];
    for (seq, (inner, payload)) in messages.iter().enumerate() {
        // nonce = iv XOR (0x00000000 || seq u64)
        let mut nonce = iv;
        for (n, s) in nonce[4..].iter_mut().zip((seq as u64).to_be_bytes()) {
            *n ^= s;
        }
        // 0x17 | length u32 | AES-256-GCM(aad = header, inner_type u8 || payload) || tag[16]
        let len = 1 + payload.len() + 16;
        let mut header = vec![0x17];
        header.extend((len as u32).to_be_bytes());
        let mut plain = vec![*inner];
        plain.extend_from_slice(payload);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &header,
                },
            )
            .unwrap();
        assert_eq!(sealed.len(), len);
        by_hand.extend(header);
        by_hand.extend(sealed);
    }

    let keys = DirectionKeys { key, iv };
    // The library seals the same bytes...
    let mut sealer = Sealer::new(&keys);
    let mut sealed = vec![];
    for (inner, payload) in messages {
        sealer.seal(inner, payload, &mut sealed).unwrap();
    }
    assert_eq!(sealed, by_hand);
    // ...and opens the hand-made records in order.
    let mut opener = Opener::new(&keys);
    let mut rest = by_hand.as_slice();
    for (inner, payload) in messages {
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(&rest[..5]);
        let h = FrameHeader::parse(&header).unwrap();
        let mut body = rest[5..5 + h.len].to_vec();
        let (t, p) = opener.open(&header, &mut body).unwrap();
        assert_eq!((t, p), (inner, payload));
        rest = &rest[5 + h.len..];
    }
}

// ---------------------------------------------------------------------------------------------
// §4.8 The files kept beside received data
// ---------------------------------------------------------------------------------------------

/// "abc" is `YWJj` in base64: a PEM block small enough to write by hand.
const PEM_ABC: &str = "-----BEGIN CERTIFICATE-----\nYWJj\n-----END CERTIFICATE-----\n";

#[test]
fn the_signature_sidecar_is_the_documented_text() {
    let sha = [0x3a; 32];
    let text = format!(
        "minitls-signature v1\n\
         path: docs/report 1.pdf\n\
         size: 12345\n\
         sha256: {}\n\
         signed-at: 1795000000\n\
         signature: 9f0c01\n\
         {PEM_ABC}",
        "3a".repeat(32)
    );
    let signed = SignedStatement {
        statement: FileStatement {
            path: "docs/report 1.pdf".into(),
            size: 12_345,
            sha256: sha,
            signed_at: 1_795_000_000,
        },
        signature: vec![0x9f, 0x0c, 0x01],
        signer_der: b"abc".to_vec(),
        signer_chain: vec![],
        signer_role: minitls::pki::Role::Server,
    };
    assert_eq!(SignedStatement::parse(&text).unwrap(), signed);
    assert_eq!(signed.to_text(), text);
    // CRLF and uppercase hex are read too.
    let crlf = text.replace('\n', "\r\n").replace("9f0c01", "9F0C01");
    assert_eq!(SignedStatement::parse(&crlf).unwrap(), signed);
    // Behind intermediate CAs, each follows the signer's certificate, its issuer first.
    let chained = format!("{text}{PEM_DEF}{PEM_ABC}");
    let with_chain = SignedStatement {
        signer_chain: vec![b"def".to_vec(), b"abc".to_vec()],
        ..signed
    };
    assert_eq!(SignedStatement::parse(&chained).unwrap(), with_chain);
    assert_eq!(with_chain.to_text(), chained);
    // At most 3 intermediates, as in a handshake.
    let long = format!("{chained}{PEM_ABC}{PEM_ABC}");
    assert!(SignedStatement::parse(&long).is_err());
}

/// "def" is `ZGVm` in base64.
const PEM_DEF: &str = "-----BEGIN CERTIFICATE-----\nZGVm\n-----END CERTIFICATE-----\n";

#[test]
fn the_tree_manifest_is_the_documented_text() {
    let css = [0x8c; 32];
    let text = format!(
        "minitls-manifest v1\n\
         root: projects/site\n\
         signed-at: 1795000000\n\
         signature: 51e2\n\
         entries: 3\n\
         d 0 {zeros} css\n\
         f 1200 {css} css/main file.css\n\
         f 0 {empty} index.html\n\
         {PEM_ABC}",
        zeros = "0".repeat(64),
        css = "8c".repeat(32),
        empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    let m = SignedManifest {
        root: "projects/site".into(),
        signed_at: 1_795_000_000,
        entries: vec![
            ManifestEntry {
                kind: EntryKind::Dir,
                path: "css".into(),
                size: 0,
                sha256: [0; 32],
            },
            ManifestEntry {
                kind: EntryKind::File,
                path: "css/main file.css".into(),
                size: 1_200,
                sha256: css,
            },
            ManifestEntry {
                kind: EntryKind::File,
                path: "index.html".into(),
                size: 0,
                sha256: sha256(b""),
            },
        ],
        signature: vec![0x51, 0xe2],
        signer_der: b"abc".to_vec(),
        signer_chain: vec![],
    };
    assert_eq!(SignedManifest::parse(&text).unwrap(), m);
    assert_eq!(m.to_text(), text);
    let chained = format!("{text}{PEM_DEF}");
    let with_chain = SignedManifest {
        signer_chain: vec![b"def".to_vec()],
        ..m
    };
    assert_eq!(SignedManifest::parse(&chained).unwrap(), with_chain);
    assert_eq!(with_chain.to_text(), chained);
}

#[test]
fn resumption_messages_are_laid_out_as_documented() {
    // ResumeHello = version u16 | random_c [32] | x25519_c [32] | fp_c [32] | vec16<ticket> | binder [32]
    let ticket = vec![0x55; 300];
    let mut b = vec![];
    b.extend(3u16.to_be_bytes());
    b.extend([0x11; 32]);
    b.extend([0x22; 32]);
    b.extend([0x33; 32]);
    vec16(&mut b, &ticket);
    b.extend([0x44; 32]);
    layout(
        &b,
        minitls::wire::ResumeHello {
            version: 3,
            random: [0x11; 32],
            x25519: [0x22; 32],
            client_fingerprint: [0x33; 32],
            ticket: ticket.clone(),
            binder: [0x44; 32],
        },
    );
    // ServerResume = version u16 | random_s [32] | x25519_s [32]
    let mut b = vec![];
    b.extend(3u16.to_be_bytes());
    b.extend([0x66; 32]);
    b.extend([0x77; 32]);
    layout(
        &b,
        minitls::wire::ServerResume {
            version: 3,
            random: [0x66; 32],
            x25519: [0x77; 32],
        },
    );
    // NewTicket = lifetime_secs u32 | vec16<ticket>
    let mut b = vec![];
    b.extend(86_400u32.to_be_bytes());
    vec16(&mut b, &ticket);
    layout(
        &b,
        minitls::wire::NewTicket {
            lifetime_secs: 86_400,
            ticket,
        },
    );
    assert_eq!(minitls::wire::MAX_TICKET_LEN, 18_496 - 132);
    assert_eq!(minitls::wire::RESUME_HELLO_FIXED, 132);
}
