//! Writes the seed corpus: `cargo run --example gen_seeds` in `fuzz/` (a stable toolchain is
//! enough). Replaces `seeds/<target>/` with a few valid (and a few nearly valid) inputs per
//! target. The certificates come from the test PKI, which is made afresh in every process,
//! so the handshake targets also get "real" pieces (see `src/lib.rs`) that work in any run.

use std::fs;
use std::path::Path;

use minitls::crypto::Secret32;
use minitls::handshake::{ClientState, ServerState, TicketContents, TicketKeys};
use minitls::record::Sealer;
use minitls::testkit;
use minitls::wire::{
    Alert, AppType, CertificateVerify, ClientCertificate, Codec, EntryKind, ErrorCode, ErrorMsg,
    FRAME_HEADER_LEN, FileDone, FileEnd, FileStart, FileStatement, Finished, FrameType, ListEnd,
    ListEntry, Listing, ManifestEntry, NewTicket, PROTOCOL_VERSION, PathMsg, PutStart, Request,
    RequestKind, ResumeHello, ServerResume, SkippedMsg, TextMsg, TreeEnd, TreeStart,
};
use minitls_fuzz::{
    MODE_ROUND_TRIP, MODE_STREAM, REAL, put_piece, record_keys, run_client, run_server,
};

/// Splits concatenated frames into (type, body).
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push((
            rest[0],
            rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec(),
        ));
        rest = &rest[FRAME_HEADER_LEN + len..];
    }
    out
}

/// One complete in-memory handshake through the library's state machines: the seven frames
/// as sent, in order.
fn real_handshake() -> Vec<(u8, Vec<u8>)> {
    let p = testkit::pki();
    let (mut c, ch) = ClientState::start(p.client_config());
    let mut s = ServerState::start(p.server_config());
    let mut all = Vec::new();
    let mut to_server = frames(&ch);
    let mut to_client = Vec::new();
    loop {
        if !to_server.is_empty() {
            let (t, body) = to_server.remove(0);
            let (next, out) = s.step(FrameType::from_u8(t).unwrap(), &body).unwrap();
            all.push((t, body));
            s = next;
            to_client.extend(frames(&out));
        } else if !to_client.is_empty() {
            let (t, body) = to_client.remove(0);
            let (next, out) = c.step(FrameType::from_u8(t).unwrap(), &body).unwrap();
            all.push((t, body));
            c = next;
            to_server.extend(frames(&out));
        } else {
            break;
        }
    }
    assert!(matches!(c, ClientState::Done(_)) && matches!(s, ServerState::Done(_)));
    assert_eq!(all.len(), 7);
    all
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

fn fresh(root: &Path, target: &str) -> std::path::PathBuf {
    let dir = root.join(target);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn pieces(list: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, b) in list {
        put_piece(&mut out, *t, b);
    }
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let hs = real_handshake();
    let body = |i: usize| hs[i].1.as_slice();

    // wire_decode: one valid encoding per message type.
    let dir = fresh(&root, "wire_decode");
    let names = [
        "client_hello",
        "server_hello",
        "client_certificate",
        "client_certificate_verify",
        "client_finished",
        "server_certificate_verify",
        "server_finished",
    ];
    for (i, name) in names.iter().enumerate() {
        write(&dir, name, body(i));
    }
    let statement = FileStatement {
        path: "docs/report é.txt".into(),
        size: 1234,
        sha256: [0xab; 32],
        signed_at: 1_790_000_000,
    };
    let app: Vec<(&str, Vec<u8>)> = vec![
        ("alert", Alert::HandshakeFailure.to_bytes()),
        ("alert_revoked", Alert::CertificateRevoked.to_bytes()),
        (
            "request",
            Request {
                kind: RequestKind::Get,
                recursive: true,
                offset: 4096,
                prefix_sha256: [7; 32],
                path: "dir/sub/file.bin".into(),
            }
            .to_bytes(),
        ),
        (
            "file_start",
            FileStart {
                path: "a/b.txt".into(),
                size: 1 << 33,
                mtime: -1,
                offset: 0,
            }
            .to_bytes(),
        ),
        ("file_statement", statement.to_bytes()),
        (
            "file_end",
            FileEnd {
                statement: statement.clone(),
                signature: vec![0x5a; 256],
            }
            .to_bytes(),
        ),
        (
            "listing",
            Listing {
                entries: vec![
                    ListEntry {
                        kind: EntryKind::Dir,
                        size: 0,
                        mtime: 1,
                        path: "d".into(),
                    },
                    ListEntry {
                        kind: EntryKind::File,
                        size: 10,
                        mtime: 2,
                        path: "d/f".into(),
                    },
                ],
            }
            .to_bytes(),
        ),
        (
            "tree_start",
            TreeStart {
                root: "a".into(),
                files: 3,
                dirs: 2,
                bytes: 1 << 20,
            }
            .to_bytes(),
        ),
        ("path", PathMsg { path: "x/y".into() }.to_bytes()),
        (
            "skipped",
            SkippedMsg {
                path: "link".into(),
                reason: "symbolic link".into(),
            }
            .to_bytes(),
        ),
        ("file_done", FileDone { sha256: [3; 32] }.to_bytes()),
        (
            "tree_end",
            TreeEnd {
                signed_at: 5,
                signature: vec![2; 384],
            }
            .to_bytes(),
        ),
        ("list_end", ListEnd { hidden: 2 }.to_bytes()),
        // Issue 15's messages, as the typed enum sees them: type byte, then body.
        ("say", {
            let mut b = vec![AppType::Say as u8];
            TextMsg {
                text: "hello \u{1b}[31mred".into(),
            }
            .encode(&mut b);
            b
        }),
        ("ping", vec![AppType::Ping as u8]),
        ("pong", vec![AppType::Pong as u8]),
        ("notice", {
            let mut b = vec![AppType::Notice as u8];
            TextMsg {
                text: "the server restarts at 18:00".into(),
            }
            .encode(&mut b);
            b
        }),
        (
            "goodbye_dropped",
            vec![AppType::Goodbye as u8, Alert::DroppedByOperator as u8],
        ),
        (
            "goodbye_session_limit",
            vec![AppType::Goodbye as u8, Alert::SessionTimeLimit as u8],
        ),
        (
            "put",
            PutStart {
                kind: EntryKind::File,
                force: true,
                path: "uploads/alice/f.bin".into(),
                size: 1 << 20,
                mtime: 1_790_000_000,
            }
            .to_bytes(),
        ),
        (
            "manifest_entry",
            ManifestEntry {
                kind: EntryKind::File,
                path: "sub/f".into(),
                size: 1,
                sha256: [4; 32],
            }
            .to_bytes(),
        ),
        (
            "error",
            ErrorMsg {
                code: ErrorCode::NotFound,
                text: "no such file".into(),
            }
            .to_bytes(),
        ),
        ("frame_header_record", vec![0x17, 0, 0, 0, 17]),
    ];
    for (name, bytes) in &app {
        write(&dir, name, bytes);
    }
    // Version 3: session resumption, with a real ticket.
    let keys = TicketKeys::new(3600);
    let contents = TicketContents {
        id: [1; 16],
        issued_at: 1_790_000_000,
        expires_at: 1_790_086_400,
        resumption: Secret32([2; 32]),
        server_fingerprint: [3; 32],
        client_cert: testkit::pki().client.cert_der.clone(),
        client_chain: Vec::new(),
    };
    let ticket = keys.seal(&contents).expect("a test ticket fits");
    let resume = [
        (
            "resume_hello",
            ResumeHello {
                version: PROTOCOL_VERSION,
                random: [5; 32],
                x25519: [6; 32],
                client_fingerprint: [7; 32],
                ticket: ticket.clone(),
                binder: [8; 32],
            }
            .to_bytes(),
        ),
        (
            "server_resume",
            ServerResume {
                version: PROTOCOL_VERSION,
                random: [9; 32],
                x25519: [10; 32],
            }
            .to_bytes(),
        ),
        (
            "new_ticket",
            NewTicket {
                lifetime_secs: 86_400,
                ticket: ticket.clone(),
            }
            .to_bytes(),
        ),
    ];
    for (name, bytes) in &resume {
        write(&dir, name, bytes);
    }
    // ticket_decode: decrypted contents, and a sealed ticket (which opens only under the
    // key of this run, so for the target it is ciphertext of the right shape).
    let dir = fresh(&root, "ticket_decode");
    write(&dir, "contents", &contents.to_bytes());
    write(&dir, "sealed", &ticket);

    // record_open: streams of valid records under the target's fixed keys, and round trips.
    let dir = fresh(&root, "record_open");
    let mut sealer = Sealer::new(&record_keys());
    let mut stream = vec![MODE_STREAM];
    sealer
        .seal(AppType::Request as u8, &app[1].1, &mut stream)
        .unwrap();
    write(&dir, "stream_one_record", &stream);
    sealer
        .seal(AppType::Data as u8, b"hello, records", &mut stream)
        .unwrap();
    sealer.seal(AppType::Close as u8, b"", &mut stream).unwrap();
    write(&dir, "stream_three_records", &stream);
    let mut rt = vec![MODE_ROUND_TRIP, AppType::Data as u8, 0, 42];
    rt.extend_from_slice(b"some payload bytes");
    write(&dir, "round_trip", &rt);
    write(&dir, "round_trip_empty", &[MODE_ROUND_TRIP, 8, 1, 0]);

    // server_handshake: what a client sends, as sent, and with the harness's real pieces.
    let dir = fresh(&root, "server_handshake");
    let wrapped = ClientCertificate::decode(body(2)).unwrap().wrapped_secret;
    let mut wrapped16 = (wrapped.len() as u16).to_be_bytes().to_vec();
    wrapped16.extend_from_slice(&wrapped);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "recorded_client_flights",
            pieces(&[(1, body(0)), (3, body(2)), (4, body(3)), (5, body(4))]),
        ),
        (
            "real_certificate_and_signature",
            pieces(&[
                (1, body(0)),
                (3 | REAL, &wrapped16),
                (4 | REAL, &[]),
                (5, body(4)),
            ]),
        ),
        ("hello_then_alert", pieces(&[(1, body(0)), (0x15, &[2])])),
        ("hello_only", pieces(&[(1, body(0))])),
    ];
    for (name, bytes) in &seeds {
        write(&dir, name, bytes);
    }
    // The real pieces reach the last state: a valid signature, then the Finished check.
    assert_eq!(
        run_server(&seeds[1].1),
        3,
        "real pieces reach ClientFinished"
    );

    // client_handshake: what a server sends, as sent, and with the harness's real pieces.
    let dir = fresh(&root, "client_handshake");
    let sh_prefix = &body(1)[..2 + 32 + 32];
    let empty_sig = CertificateVerify { signature: vec![] }.to_bytes();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "recorded_server_flights",
            pieces(&[(2, body(1)), (6, body(5)), (7, body(6))]),
        ),
        (
            "real_certificate_and_signature",
            pieces(&[(2 | REAL, sh_prefix), (6 | REAL, &[]), (7, body(6))]),
        ),
        (
            "real_certificate_bad_signature",
            pieces(&[(2 | REAL, sh_prefix), (6, &empty_sig)]),
        ),
        ("alert", pieces(&[(0x15, &[1])])),
        (
            "finished_too_early",
            pieces(&[(7, &Finished { mac: [0; 32] }.to_bytes())]),
        ),
    ];
    for (name, bytes) in &seeds {
        write(&dir, name, bytes);
    }
    assert_eq!(
        run_client(&seeds[1].1),
        2,
        "real pieces reach ServerFinished"
    );

    let count = |t: &str| fs::read_dir(root.join(t)).unwrap().count();
    for t in [
        "wire_decode",
        "ticket_decode",
        "record_open",
        "server_handshake",
        "client_handshake",
    ] {
        println!("seeds/{t}: {} files", count(t));
    }
}
