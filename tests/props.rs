//! Property tests for the codecs and the record layer (issue 4). They run in the normal suite;
//! case counts are chosen to keep the whole file to a few seconds.
//!
//! - every wire message round-trips for arbitrary field values within the limits;
//! - arbitrary bytes (and mutations of valid encodings) never panic any decoder, and any
//!   success re-encodes to exactly the same bytes (the encodings are canonical);
//! - `FrameHeader::parse` never accepts a length above its type's maximum;
//! - a sealed record opens to the same payload, and any single-bit flip makes it fail.

use std::fmt::Debug;

use minitls::record::{DirectionKeys, Opener, RecordError, Sealer};
use minitls::wire::{
    Alert, CertificateVerify, ClientCertificate, ClientHello, Codec, DecodeError, EntryKind,
    ErrorCode, ErrorMsg, FRAME_HEADER_LEN, FileDone, FileEnd, FileStart, FileStatement, Finished,
    FrameHeader, FrameType, ListEntry, Listing, MAX_CERT_LEN, MAX_CHAIN_LEN, MAX_CHAIN_MSG_BODY,
    MAX_ERROR_TEXT, MAX_LIST_ENTRIES_PER_MSG, MAX_PATH_LEN, MAX_RECORD_BODY, MAX_RECORD_PAYLOAD,
    MAX_RSA_BLOB_LEN, ManifestEntry, PathMsg, Request, RequestKind, ServerHello, SkippedMsg,
    TAG_LEN, TreeEnd, TreeStart, put_u16, truncate_utf8,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Bytes of any length up to `max`, with the boundary itself drawn often enough to matter.
fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..=64.min(max)),
        1 => prop::collection::vec(any::<u8>(), 0..=max),
        1 => prop::collection::vec(any::<u8>(), max..=max),
    ]
}

/// Any UTF-8 string (any scalar values, NUL and controls included: the codec does not judge
/// paths) of at most `max` bytes, sometimes cut right at the limit.
fn text(max: usize) -> impl Strategy<Value = String> {
    let chars = |n: usize| prop::collection::vec(any::<char>(), 0..n);
    prop_oneof![
        3 => chars(24),
        1 => chars(max / 2 + 1),
    ]
    .prop_map(move |cs| {
        let s: String = cs.into_iter().collect();
        String::from_utf8(truncate_utf8(&s, max).to_vec()).expect("cut on a char boundary")
    })
}

fn entry_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![Just(EntryKind::File), Just(EntryKind::Dir)]
}

/// Up to MAX_CHAIN_LEN intermediate certificates (kept short: sizes are tested elsewhere).
fn chain() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(blob(64), 0..=MAX_CHAIN_LEN)
}

fn alert() -> impl Strategy<Value = Alert> {
    prop_oneof![
        Just(Alert::BadCertificate),
        Just(Alert::HandshakeFailure),
        Just(Alert::ProtocolError),
        Just(Alert::UnsupportedVersion),
        Just(Alert::Busy),
        Just(Alert::Timeout),
        Just(Alert::CertificateExpired),
        Just(Alert::CertificateRevoked),
        Just(Alert::CertificateWrongRole),
        Just(Alert::UnknownCa),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::NotFound),
        Just(ErrorCode::PathRefused),
        Just(ErrorCode::IsDirectory),
        Just(ErrorCode::ReadFailed),
        Just(ErrorCode::BadRequest),
    ]
}

fn statement() -> impl Strategy<Value = FileStatement> {
    (
        text(MAX_PATH_LEN),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<i64>(),
    )
        .prop_map(|(path, size, sha256, signed_at)| FileStatement {
            path,
            size,
            sha256,
            signed_at,
        })
}

fn list_entry() -> impl Strategy<Value = ListEntry> {
    (entry_kind(), any::<u64>(), any::<i64>(), text(MAX_PATH_LEN)).prop_map(
        |(kind, size, mtime, path)| ListEntry {
            kind,
            size,
            mtime,
            path,
        },
    )
}

/// Every message type of `src/wire.rs`, as one enum so one strategy draws any of them.
#[derive(Clone, Debug)]
enum Msg {
    ClientHello(ClientHello),
    ServerHello(ServerHello),
    ClientCertificate(ClientCertificate),
    CertificateVerify(CertificateVerify),
    Finished(Finished),
    Alert(Alert),
    Request(Request),
    FileStart(FileStart),
    FileStatement(FileStatement),
    FileEnd(FileEnd),
    ListEntry(ListEntry),
    Listing(Listing),
    TreeStart(TreeStart),
    PathMsg(PathMsg),
    SkippedMsg(SkippedMsg),
    FileDone(FileDone),
    TreeEnd(TreeEnd),
    ManifestEntry(ManifestEntry),
    ErrorMsg(ErrorMsg),
}

impl Msg {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Msg::ClientHello(m) => m.to_bytes(),
            Msg::ServerHello(m) => m.to_bytes(),
            Msg::ClientCertificate(m) => m.to_bytes(),
            Msg::CertificateVerify(m) => m.to_bytes(),
            Msg::Finished(m) => m.to_bytes(),
            Msg::Alert(m) => m.to_bytes(),
            Msg::Request(m) => m.to_bytes(),
            Msg::FileStart(m) => m.to_bytes(),
            Msg::FileStatement(m) => m.to_bytes(),
            Msg::FileEnd(m) => m.to_bytes(),
            Msg::ListEntry(m) => m.to_bytes(),
            Msg::Listing(m) => m.to_bytes(),
            Msg::TreeStart(m) => m.to_bytes(),
            Msg::PathMsg(m) => m.to_bytes(),
            Msg::SkippedMsg(m) => m.to_bytes(),
            Msg::FileDone(m) => m.to_bytes(),
            Msg::TreeEnd(m) => m.to_bytes(),
            Msg::ManifestEntry(m) => m.to_bytes(),
            Msg::ErrorMsg(m) => m.to_bytes(),
        }
    }

    /// Decodes `bytes` as the same message type and compares.
    fn decodes_back(&self, bytes: &[u8]) -> bool {
        fn same<T: Codec + PartialEq>(m: &T, bytes: &[u8]) -> bool {
            T::decode(bytes).as_ref() == Ok(m)
        }
        match self {
            Msg::ClientHello(m) => same(m, bytes),
            Msg::ServerHello(m) => same(m, bytes),
            Msg::ClientCertificate(m) => same(m, bytes),
            Msg::CertificateVerify(m) => same(m, bytes),
            Msg::Finished(m) => same(m, bytes),
            Msg::Alert(m) => same(m, bytes),
            Msg::Request(m) => same(m, bytes),
            Msg::FileStart(m) => same(m, bytes),
            Msg::FileStatement(m) => same(m, bytes),
            Msg::FileEnd(m) => same(m, bytes),
            Msg::ListEntry(m) => same(m, bytes),
            Msg::Listing(m) => same(m, bytes),
            Msg::TreeStart(m) => same(m, bytes),
            Msg::PathMsg(m) => same(m, bytes),
            Msg::SkippedMsg(m) => same(m, bytes),
            Msg::FileDone(m) => same(m, bytes),
            Msg::TreeEnd(m) => same(m, bytes),
            Msg::ManifestEntry(m) => same(m, bytes),
            Msg::ErrorMsg(m) => same(m, bytes),
        }
    }
}

fn msg() -> impl Strategy<Value = Msg> {
    let handshake = prop_oneof![
        (any::<u16>(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(version, random, x)| {
            Msg::ClientHello(ClientHello {
                version,
                random,
                x25519: x,
            })
        }),
        (
            any::<u16>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            blob(MAX_CERT_LEN),
            chain()
        )
            .prop_map(|(version, random, x, certificate, chain)| {
                Msg::ServerHello(ServerHello {
                    version,
                    random,
                    x25519: x,
                    certificate,
                    chain,
                })
            }),
        (blob(MAX_CERT_LEN), chain(), blob(MAX_RSA_BLOB_LEN)).prop_map(
            |(certificate, chain, wrapped_secret)| {
                Msg::ClientCertificate(ClientCertificate {
                    certificate,
                    chain,
                    wrapped_secret,
                })
            }
        ),
        blob(MAX_RSA_BLOB_LEN)
            .prop_map(|signature| Msg::CertificateVerify(CertificateVerify { signature })),
        any::<[u8; 32]>().prop_map(|mac| Msg::Finished(Finished { mac })),
        alert().prop_map(Msg::Alert),
    ];
    let transfer = prop_oneof![
        (
            prop_oneof![Just(RequestKind::Get), Just(RequestKind::List)],
            any::<bool>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            text(MAX_PATH_LEN)
        )
            .prop_map(|(kind, recursive, offset, prefix_sha256, path)| {
                Msg::Request(Request {
                    kind,
                    recursive,
                    offset,
                    prefix_sha256,
                    path,
                })
            }),
        (text(MAX_PATH_LEN), any::<u64>(), any::<i64>(), any::<u64>()).prop_map(
            |(path, size, mtime, offset)| Msg::FileStart(FileStart {
                path,
                size,
                mtime,
                offset,
            })
        ),
        statement().prop_map(Msg::FileStatement),
        (statement(), blob(MAX_RSA_BLOB_LEN)).prop_map(|(statement, signature)| {
            Msg::FileEnd(FileEnd {
                statement,
                signature,
            })
        }),
        list_entry().prop_map(Msg::ListEntry),
        prop::collection::vec(list_entry(), 0..12)
            .prop_map(|entries| Msg::Listing(Listing { entries })),
        (text(MAX_PATH_LEN), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(root, files, dirs, bytes)| Msg::TreeStart(TreeStart {
                root,
                files,
                dirs,
                bytes,
            })
        ),
        text(MAX_PATH_LEN).prop_map(|path| Msg::PathMsg(PathMsg { path })),
        (text(MAX_PATH_LEN), text(MAX_ERROR_TEXT))
            .prop_map(|(path, reason)| Msg::SkippedMsg(SkippedMsg { path, reason })),
        any::<[u8; 32]>().prop_map(|sha256| Msg::FileDone(FileDone { sha256 })),
        (any::<i64>(), blob(MAX_RSA_BLOB_LEN)).prop_map(|(signed_at, signature)| Msg::TreeEnd(
            TreeEnd {
                signed_at,
                signature
            }
        )),
        (
            entry_kind(),
            text(MAX_PATH_LEN),
            any::<u64>(),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(kind, path, size, sha256)| Msg::ManifestEntry(ManifestEntry {
                    kind,
                    path,
                    size,
                    sha256,
                })
            ),
        (error_code(), text(MAX_ERROR_TEXT))
            .prop_map(|(code, text)| Msg::ErrorMsg(ErrorMsg { code, text })),
    ];
    prop_oneof![6 => handshake, 13 => transfer]
}

// ---------------------------------------------------------------------------------------------
// Decoding arbitrary bytes
// ---------------------------------------------------------------------------------------------

/// If `bytes` decode as `T`, they are that value's only encoding and decode to it again.
fn canonical_or_error<T: Codec + PartialEq + Debug>(bytes: &[u8]) -> usize {
    match T::decode(bytes) {
        Ok(v) => {
            let again = v.to_bytes();
            assert_eq!(
                again,
                bytes,
                "{} decoded from bytes it does not re-encode to",
                std::any::type_name::<T>()
            );
            assert_eq!(T::decode(&again), Ok(v));
            1
        }
        Err(_) => 0,
    }
}

/// Runs every decoder of `src/wire.rs` over `bytes`; returns how many accepted them.
fn every_decoder(bytes: &[u8]) -> usize {
    canonical_or_error::<ClientHello>(bytes)
        + canonical_or_error::<ServerHello>(bytes)
        + canonical_or_error::<ClientCertificate>(bytes)
        + canonical_or_error::<CertificateVerify>(bytes)
        + canonical_or_error::<Finished>(bytes)
        + canonical_or_error::<Alert>(bytes)
        + canonical_or_error::<Request>(bytes)
        + canonical_or_error::<FileStart>(bytes)
        + canonical_or_error::<FileStatement>(bytes)
        + canonical_or_error::<FileEnd>(bytes)
        + canonical_or_error::<ListEntry>(bytes)
        + canonical_or_error::<Listing>(bytes)
        + canonical_or_error::<TreeStart>(bytes)
        + canonical_or_error::<PathMsg>(bytes)
        + canonical_or_error::<SkippedMsg>(bytes)
        + canonical_or_error::<FileDone>(bytes)
        + canonical_or_error::<TreeEnd>(bytes)
        + canonical_or_error::<ManifestEntry>(bytes)
        + canonical_or_error::<ErrorMsg>(bytes)
}

/// A change to a valid encoding: most decoders then see nearly-valid input, which random
/// bytes almost never are.
#[derive(Clone, Debug)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Flip(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        if let Mutation::Append(tail) = m {
            bytes.extend_from_slice(tail);
        }
        return;
    }
    match m {
        Mutation::Set(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::Flip(i, bit) => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Mutation::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Append(tail) => bytes.extend_from_slice(tail),
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// Key and IV as plain arrays: `DirectionKeys` deliberately has no `Debug`, which proptest
/// needs to report a failing case.
type RawKeys = ([u8; 32], [u8; 12]);

fn keys() -> impl Strategy<Value = RawKeys> {
    any::<RawKeys>()
}

fn dk(k: &RawKeys) -> DirectionKeys {
    DirectionKeys { key: k.0, iv: k.1 }
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..300),
        1 => prop::collection::vec(any::<u8>(), 0..=MAX_RECORD_PAYLOAD),
        1 => prop::collection::vec(any::<u8>(), MAX_RECORD_PAYLOAD..=MAX_RECORD_PAYLOAD),
    ]
}

fn split(frame: &[u8]) -> ([u8; FRAME_HEADER_LEN], Vec<u8>) {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h.copy_from_slice(&frame[..FRAME_HEADER_LEN]);
    (h, frame[FRAME_HEADER_LEN..].to_vec())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(m in msg()) {
        let bytes = m.to_bytes();
        prop_assert!(m.decodes_back(&bytes), "{m:?} does not decode back");
        // The encoding is canonical for the decoders too (and no other decoder panics on it).
        every_decoder(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic_and_any_success_is_canonical(
        m in msg(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = m.to_bytes();
        for mu in &muts {
            apply(&mut bytes, mu);
        }
        every_decoder(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_any_success_is_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        every_decoder(&bytes);
    }

    #[test]
    fn a_frame_header_never_accepts_a_length_above_its_type_maximum(raw in any::<[u8; 5]>()) {
        let declared = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
        match FrameHeader::parse(&raw) {
            Ok(h) => {
                prop_assert!(h.len <= h.typ.max_body());
                prop_assert_eq!(h.len, declared);
                prop_assert_eq!(h.typ as u8, raw[0]);
                prop_assert_eq!(FrameHeader::encode(h.typ, h.len), raw);
            }
            Err(DecodeError::UnknownType(t)) => {
                prop_assert_eq!(t, raw[0]);
                prop_assert!(FrameType::from_u8(raw[0]).is_none());
            }
            Err(DecodeError::TooLong { len, max, .. }) => {
                let typ = FrameType::from_u8(raw[0]).expect("a known type");
                prop_assert_eq!(len, declared);
                prop_assert_eq!(max, typ.max_body());
                prop_assert!(declared > max);
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn a_frame_header_accepts_every_length_up_to_the_maximum(
        t in prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 7, 0x15, 0x17]),
        frac in 0.0f64..=1.0,
    ) {
        let typ = FrameType::from_u8(t).expect("known type");
        let len = (typ.max_body() as f64 * frac) as usize;
        let raw = FrameHeader::encode(typ, len);
        prop_assert_eq!(FrameHeader::parse(&raw), Ok(FrameHeader { typ, len }));
        let mut over = raw;
        over[1..].copy_from_slice(&((typ.max_body() + 1 + len) as u32).to_be_bytes());
        let too_long = matches!(FrameHeader::parse(&over), Err(DecodeError::TooLong { .. }));
        prop_assert!(too_long);
    }
}

proptest! {
    // Each case seals up to 256 KiB; fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn sealed_records_open_to_the_same_payload_in_order(
        k in keys(),
        records in prop::collection::vec((any::<u8>(), payload()), 1..4),
    ) {
        let mut sealer = Sealer::new(&dk(&k));
        let mut opener = Opener::new(&dk(&k));
        for (inner, p) in &records {
            let mut frame = Vec::new();
            sealer.seal(*inner, p, &mut frame).unwrap();
            prop_assert_eq!(frame.len(), FRAME_HEADER_LEN + 1 + p.len() + TAG_LEN);
            let (h, mut body) = split(&frame);
            let header = FrameHeader::parse(&h).unwrap();
            prop_assert_eq!(header.typ, FrameType::Record);
            prop_assert!(header.len <= MAX_RECORD_BODY);
            let (got_inner, got) = opener.open(&h, &mut body).unwrap();
            prop_assert_eq!(got_inner, *inner);
            prop_assert_eq!(got, &p[..]);
        }
    }

    #[test]
    fn any_single_bit_flip_of_a_sealed_record_fails_to_open(
        k in keys(),
        inner in any::<u8>(),
        p in prop::collection::vec(any::<u8>(), 0..600),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        earlier in 0usize..3,
    ) {
        let mut sealer = Sealer::new(&dk(&k));
        let mut opener = Opener::new(&dk(&k));
        // A few records first, so the flip hits a record at a non-zero sequence number.
        for _ in 0..earlier {
            let mut f = Vec::new();
            sealer.seal(inner, b"earlier", &mut f).unwrap();
            let (h, mut b) = split(&f);
            opener.open(&h, &mut b).unwrap();
        }
        let mut frame = Vec::new();
        sealer.seal(inner, &p, &mut frame).unwrap();
        let i = at.index(frame.len());
        frame[i] ^= 1 << bit;
        let (h, mut body) = split(&frame);
        let r = opener.open(&h, &mut body).map(|(t, p)| (t, p.to_vec()));
        prop_assert!(r.is_err(), "flip of bit {bit} at byte {i} opened: {r:?}");
        if i >= FRAME_HEADER_LEN {
            // Body flips are authentication failures, all reported the same way.
            prop_assert_eq!(r, Err(RecordError::BadRecord));
        }
    }

    #[test]
    fn a_record_opens_only_under_its_own_key_and_sequence_number(
        k in keys(),
        other in keys(),
        p in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(other != k);
        let mut frame = Vec::new();
        Sealer::new(&dk(&k)).seal(3, &p, &mut frame).unwrap();
        let (h, body) = split(&frame);
        prop_assert_eq!(
            Opener::new(&dk(&other)).open(&h, &mut body.clone()).map(|(t, _)| t),
            Err(RecordError::BadRecord)
        );
        // The same record one position later in the stream (a replay) fails too.
        let mut opener = Opener::new(&dk(&k));
        opener.open(&h, &mut body.clone()).unwrap();
        prop_assert_eq!(
            opener.open(&h, &mut body.clone()).map(|(t, _)| t),
            Err(RecordError::BadRecord)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Limits, exactly at the boundary (deterministic)
// ---------------------------------------------------------------------------------------------

#[test]
fn length_prefixes_at_their_maximum_decode_and_one_more_is_refused() {
    fn vec16(len: usize) -> Vec<u8> {
        let mut b = Vec::new();
        put_u16(&mut b, len as u16);
        b.resize(2 + len, b'a');
        b
    }
    // CertificateVerify is one vec16 of at most MAX_RSA_BLOB_LEN.
    assert!(CertificateVerify::decode(&vec16(MAX_RSA_BLOB_LEN)).is_ok());
    assert!(matches!(
        CertificateVerify::decode(&vec16(MAX_RSA_BLOB_LEN + 1)),
        Err(DecodeError::TooLong { .. })
    ));
    // PathMsg is one vec16 string of at most MAX_PATH_LEN.
    assert!(PathMsg::decode(&vec16(MAX_PATH_LEN)).is_ok());
    assert!(matches!(
        PathMsg::decode(&vec16(MAX_PATH_LEN + 1)),
        Err(DecodeError::TooLong { .. })
    ));
    // ClientCertificate: certificate at most MAX_CERT_LEN, then the chain count.
    let mut cc = vec16(MAX_CERT_LEN);
    cc.push(0);
    cc.extend_from_slice(&vec16(0));
    assert!(ClientCertificate::decode(&cc).is_ok());
    let mut cc = vec16(MAX_CERT_LEN + 1);
    cc.push(0);
    cc.extend_from_slice(&vec16(0));
    assert!(matches!(
        ClientCertificate::decode(&cc),
        Err(DecodeError::TooLong { .. })
    ));
    // The largest handshake messages fit a handshake frame.
    let biggest = ClientCertificate {
        certificate: vec![0; MAX_CERT_LEN],
        chain: vec![vec![0; MAX_CERT_LEN]; MAX_CHAIN_LEN],
        wrapped_secret: vec![0; MAX_RSA_BLOB_LEN],
    };
    assert!(biggest.to_bytes().len() <= MAX_CHAIN_MSG_BODY);
    let sh = ServerHello {
        version: 1,
        random: [0; 32],
        x25519: [0; 32],
        certificate: vec![0; MAX_CERT_LEN],
        chain: vec![vec![0; MAX_CERT_LEN]; MAX_CHAIN_LEN],
    };
    assert!(sh.to_bytes().len() <= MAX_CHAIN_MSG_BODY);
}

#[test]
fn a_full_listing_round_trips_and_one_entry_more_is_refused() {
    let entry = ListEntry {
        kind: EntryKind::File,
        size: 1,
        mtime: 2,
        path: "f".into(),
    };
    let full = Listing {
        entries: vec![entry.clone(); MAX_LIST_ENTRIES_PER_MSG],
    };
    let bytes = full.to_bytes();
    assert_eq!(Listing::decode(&bytes), Ok(full));
    // One more entry (count and bytes both consistent) is still refused by the count check.
    let mut over = Vec::new();
    put_u16(&mut over, (MAX_LIST_ENTRIES_PER_MSG + 1) as u16);
    for _ in 0..=MAX_LIST_ENTRIES_PER_MSG {
        entry.encode(&mut over);
    }
    assert!(matches!(
        Listing::decode(&over),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn error_texts_longer_than_the_limit_are_cut_on_a_character_boundary() {
    // The encoder truncates long texts (so the decoder's limit always holds); the cut never
    // splits a character, so the result still decodes.
    let long = "é".repeat(MAX_ERROR_TEXT);
    let m = ErrorMsg {
        code: ErrorCode::ReadFailed,
        text: long,
    };
    let decoded = ErrorMsg::decode(&m.to_bytes()).unwrap();
    assert!(decoded.text.len() <= MAX_ERROR_TEXT);
    assert!(m.text.starts_with(&decoded.text));
}
