//! Records, requests and signed files over in-memory pipes: a real server loop, a real client,
//! and hostile peers on either side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use minitls::conn::{self, Channel, ConnError};
use minitls::crypto;
use minitls::handshake::{ClientConfig, ServerConfig};
use minitls::mem::{self, MemEnd, Queue};
use minitls::paths::ServeRoot;
use minitls::policy::{Access, ClientId, Policy};
use minitls::record::RecordError;
use minitls::sigfile::{self, VerifyError};
use minitls::testkit::{self, pki as test_pki};
use minitls::transfer::{self, NoProgress, ServeOptions, StatementCache, TransferError};
use minitls::wire::{
    AppType, Codec, ErrorCode, ErrorMsg, FRAME_HEADER_LEN, FileDone, FileEnd, FileStart,
    FileStatement, PathMsg, Request, RequestKind, SkippedMsg, TreeEnd, TreeStart,
};

struct Pair {
    client: Channel<MemEnd>,
    server: Channel<MemEnd>,
    /// Bytes from client to server, reachable while in flight.
    c2s: Arc<Queue>,
    /// Bytes from server to client.
    s2c: Arc<Queue>,
}

fn establish_with(c: ClientConfig, s: ServerConfig) -> Pair {
    let (a, b) = mem::pair();
    let c2s = a.outbox.clone();
    let s2c = b.outbox.clone();
    let server = std::thread::spawn(move || conn::server_handshake(b, s, None));
    let client = conn::client_handshake(a, c, None).expect("client handshake");
    let server = server.join().unwrap().expect("server handshake");
    Pair {
        client,
        server,
        c2s,
        s2c,
    }
}

fn establish() -> Pair {
    establish_with(test_pki().client_config(), test_pki().server_config())
}

fn split_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= FRAME_HEADER_LEN {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push(rest[..FRAME_HEADER_LEN + len].to_vec());
        rest = &rest[FRAME_HEADER_LEN + len..];
    }
    out
}

/// The client sends three messages; `alter` rewrites the frames in flight; returns what the
/// server made of them.
fn deliver_altered(alter: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<Result<Vec<u8>, String>> {
    let mut p = establish();
    for i in 0..3u8 {
        p.client.send(AppType::Data, &[i; 10]).unwrap();
    }
    p.client.flush().unwrap();
    let mut frames = split_frames(&p.c2s.take_all());
    assert_eq!(frames.len(), 3);
    alter(&mut frames);
    for f in &frames {
        p.c2s.put(f);
    }
    p.c2s.close();
    let mut got = Vec::new();
    loop {
        match p.server.recv() {
            Ok((_, payload)) => got.push(Ok(payload.to_vec())),
            Err(e) => {
                got.push(Err(e.to_string()));
                break;
            }
        }
    }
    got
}

fn bad_record(r: &Result<Vec<u8>, String>) -> bool {
    matches!(r, Err(e) if e == &RecordError::BadRecord.to_string())
}

#[test]
fn records_arrive_in_order_and_an_eof_without_close_is_a_truncation() {
    let got = deliver_altered(|_| {});
    assert_eq!(
        got[..3],
        [Ok(vec![0; 10]), Ok(vec![1; 10]), Ok(vec![2; 10])]
    );
    assert_eq!(got[3], Err(ConnError::Truncated.to_string()));
}

#[test]
fn a_flipped_bit_in_a_record_is_detected() {
    for pos in [0usize, 4, 5, 10, 31] {
        let got = deliver_altered(|f| f[1][pos] ^= 0x01);
        assert_eq!(got[0], Ok(vec![0; 10]));
        assert!(got[1].is_err(), "flip at {pos} accepted: {got:?}");
        assert_eq!(got.len(), 2, "nothing after the bad record is released");
    }
}

#[test]
fn dropped_reordered_and_replayed_records_are_detected() {
    let dropped = deliver_altered(|f| {
        f.remove(1);
    });
    assert!(bad_record(&dropped[1]), "{dropped:?}");
    let reordered = deliver_altered(|f| f.swap(0, 1));
    assert!(bad_record(&reordered[0]), "{reordered:?}");
    let replayed = deliver_altered(|f| {
        let again = f[0].clone();
        f.insert(1, again);
    });
    assert!(bad_record(&replayed[1]), "{replayed:?}");
}

#[test]
fn a_record_cut_short_is_a_truncation_not_a_short_message() {
    let got = deliver_altered(|f| {
        f.truncate(2);
        let l = f[1].len();
        f[1].truncate(l - 3);
    });
    assert_eq!(got[0], Ok(vec![0; 10]));
    assert_eq!(got[1], Err(ConnError::Truncated.to_string()));
}

#[test]
fn a_record_from_another_connection_is_refused() {
    let mut a = establish();
    let mut b = establish();
    a.client.send(AppType::Data, b"hello").unwrap();
    a.client.flush().unwrap();
    b.c2s.put(&a.c2s.take_all());
    assert!(matches!(
        b.server.recv(),
        Err(ConnError::Record(RecordError::BadRecord))
    ));
}

#[test]
fn an_oversized_record_length_is_refused_before_reading_it() {
    let mut p = establish();
    p.c2s.put(&[0x17, 0x7f, 0xff, 0xff, 0xff]);
    assert!(matches!(p.server.recv(), Err(ConnError::Decode(_))));
}

// ---------------------------------------------------------------------------------------------
// A real server loop over a temp directory.
// ---------------------------------------------------------------------------------------------

struct Served {
    client: Channel<MemEnd>,
    server: JoinHandle<Result<(), ConnError>>,
    _root: tempfile::TempDir,
    root_path: PathBuf,
    out: tempfile::TempDir,
}

fn served(setup: impl FnOnce(&Path)) -> Served {
    served_with(setup, Access::default_read_all())
}

/// Like [`served`], the client's rights being `access`.
fn served_with(setup: impl FnOnce(&Path), access: Access) -> Served {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().join("public");
    std::fs::create_dir(&root_path).unwrap();
    setup(&root_path);
    let Pair { client, server, .. } = establish();
    let serve_root = ServeRoot::new(&root_path).unwrap();
    let server = std::thread::spawn(move || {
        let mut server = server;
        let cache = std::sync::Arc::new(StatementCache::new());
        let opts = ServeOptions {
            root: &serve_root,
            identity: &test_pki().server,
            idle_timeout: Duration::from_secs(10),
            cache: Some(&cache),
            log: &|_| {},
            access: &access,
            audit: &|_| {},
            max_upload: minitls::transfer::upload::DEFAULT_MAX_UPLOAD,
            session: None,
        };
        transfer::serve_requests(&mut server, &opts)
    });
    Served {
        client,
        server,
        _root: root,
        root_path,
        out: tempfile::tempdir().unwrap(),
    }
}

impl Served {
    /// `fetch -r NAME` into the output directory.
    fn fetch_recursive(&mut self, name: &str) -> Result<transfer::Fetch, TransferError> {
        transfer::fetch(
            &mut self.client,
            name,
            self.out.path(),
            &fetch_opts(true, false),
            &mut NoProgress,
        )
    }

    fn finish(mut self) {
        transfer::close(&mut self.client).unwrap();
        self.server.join().unwrap().unwrap();
    }
}

fn dir_entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_file_arrives_intact_with_a_signature_that_verifies_offline() {
    // Larger than one record, not a multiple of the record size.
    let data = content(700_001);
    let d = data.clone();
    let mut s = served(move |root| {
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/big.bin"), &d).unwrap();
    });
    let got =
        transfer::fetch_file(&mut s.client, "sub/big.bin", s.out.path(), &mut NoProgress).unwrap();
    assert_eq!(got.path, s.out.path().join("big.bin"));
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert_eq!(got.sha256, crypto::sha256(&data));
    assert_eq!(
        dir_entries(s.out.path()),
        ["big.bin", "big.bin.minitls-sig"],
        "no temporary files remain"
    );
    let v = sigfile::verify_file(&got.path, &test_pki().anchor).unwrap();
    assert_eq!(v.statement.path, "sub/big.bin");
    assert_eq!(v.statement.size, data.len() as u64);
    // Two requests on one connection work, and an empty file too.
    std::fs::write(s.root_path.join("empty"), b"").unwrap();
    let e = transfer::fetch_file(&mut s.client, "empty", s.out.path(), &mut NoProgress).unwrap();
    assert_eq!(e.size, 0);
    s.finish();
}

#[test]
fn a_received_file_changed_afterwards_fails_verification() {
    let mut s = served(|root| std::fs::write(root.join("f.txt"), b"original text\n").unwrap());
    let got = transfer::fetch_file(&mut s.client, "f.txt", s.out.path(), &mut NoProgress).unwrap();
    let anchor = &test_pki().anchor;
    sigfile::verify_file(&got.path, anchor).unwrap();

    std::fs::write(&got.path, b"Original text\n").unwrap();
    assert!(matches!(
        sigfile::verify_file(&got.path, anchor),
        Err(VerifyError::DigestMismatch)
    ));
    std::fs::write(&got.path, b"original text\nmore\n").unwrap();
    assert!(matches!(
        sigfile::verify_file(&got.path, anchor),
        Err(VerifyError::SizeMismatch { .. })
    ));
    // Editing the sidecar to match the new content breaks the signature instead.
    std::fs::write(&got.path, b"original text\n").unwrap();
    let sig = std::fs::read_to_string(&got.signature_path).unwrap();
    let edited = sig.replace("path: f.txt", "path: g.txt");
    std::fs::write(&got.signature_path, edited).unwrap();
    assert!(matches!(
        sigfile::verify_file(&got.path, anchor),
        Err(VerifyError::BadSignature)
    ));
    std::fs::write(&got.signature_path, &sig).unwrap();
    sigfile::verify_file(&got.path, anchor).unwrap();
    // A different CA does not vouch for this server.
    assert!(matches!(
        sigfile::verify_file(&got.path, &testkit::other_pki().anchor),
        Err(VerifyError::Certificate(_))
    ));
    std::fs::remove_file(&got.signature_path).unwrap();
    assert!(matches!(
        sigfile::verify_file(&got.path, anchor),
        Err(VerifyError::NoSidecar(_))
    ));
    s.finish();
}

fn remote_error(r: Result<impl std::fmt::Debug, TransferError>) -> (ErrorCode, String) {
    match r {
        Err(TransferError::Remote { code, text }) => (code, text),
        other => panic!("expected a refusal from the server, got {other:?}"),
    }
}

#[test]
fn missing_files_and_directories_are_clear_errors_and_nothing_is_written() {
    let mut s = served(|root| std::fs::create_dir(root.join("dir")).unwrap());
    let (code, text) = remote_error(transfer::fetch_file(
        &mut s.client,
        "nope.txt",
        s.out.path(),
        &mut NoProgress,
    ));
    assert_eq!(code, ErrorCode::NotFound);
    assert!(text.contains("nope.txt"), "{text}");
    let (code, text) = remote_error(transfer::fetch_file(
        &mut s.client,
        "dir",
        s.out.path(),
        &mut NoProgress,
    ));
    assert_eq!(code, ErrorCode::IsDirectory);
    assert!(text.contains("-r"), "{text}");
    assert!(dir_entries(s.out.path()).is_empty());
    s.finish();
}

/// Sends a raw request, bypassing the client's own path checks, and returns the reply type.
fn raw_get(chan: &mut Channel<MemEnd>, path: &str) -> (AppType, Vec<u8>) {
    chan.send_msg(
        AppType::Request,
        &Request {
            kind: RequestKind::Get,
            recursive: false,
            offset: 0,
            prefix_sha256: [0; 32],
            path: path.to_string(),
        },
    )
    .unwrap();
    chan.flush().unwrap();
    let (t, p) = chan.recv().unwrap();
    (t, p.to_vec())
}

#[test]
fn the_server_refuses_paths_outside_its_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"top secret").unwrap();
    let target = outside.path().to_path_buf();
    let mut s = served(move |root| {
        std::fs::write(root.join("ok.txt"), b"fine").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(target.join("secret"), root.join("link")).unwrap();
            std::os::unix::fs::symlink(&target, root.join("dirlink")).unwrap();
            std::os::unix::fs::symlink(root.join("ok.txt"), root.join("inside")).unwrap();
        }
    });
    let secret = outside.path().join("secret");
    let absolute = secret.to_str().unwrap().to_string();
    for bad in [
        "../secret",
        "a/../../secret",
        absolute.as_str(),
        "link",
        "dirlink/secret",
        "ok.txt\0",
        "a//ok.txt",
        "./ok.txt",
    ] {
        let (t, p) = raw_get(&mut s.client, bad);
        assert_eq!(t, AppType::Error, "{bad:?} was served");
        let e = ErrorMsg::decode(&p).unwrap();
        assert_eq!(e.code, ErrorCode::PathRefused, "{bad:?}: {}", e.text);
    }
    // The client refuses to even ask for such paths.
    assert!(matches!(
        transfer::fetch_file(&mut s.client, "../secret", s.out.path(), &mut NoProgress),
        Err(TransferError::BadRequestPath { .. })
    ));
    // A symlink that stays inside the root is served.
    let got = transfer::fetch_file(&mut s.client, "inside", s.out.path(), &mut NoProgress).unwrap();
    assert_eq!(std::fs::read(got.path).unwrap(), b"fine");
    s.finish();
}

#[test]
fn a_recursive_request_for_dot_is_the_served_root_and_nothing_else_near_it_is_accepted() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"top secret").unwrap();
    let mut s = served(|root| {
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/ok.txt"), b"fine").unwrap();
    });
    for bad in ["./..", "./", "./d", "d/.", "..", "/", "./../secret"] {
        s.client
            .send_msg(
                AppType::Request,
                &Request {
                    kind: RequestKind::Get,
                    recursive: true,
                    offset: 0,
                    prefix_sha256: [0; 32],
                    path: bad.to_string(),
                },
            )
            .unwrap();
        s.client.flush().unwrap();
        let (t, p) = s.client.recv().unwrap();
        assert_eq!(t, AppType::Error, "{bad:?} was served");
        let e = ErrorMsg::decode(p).unwrap();
        assert_eq!(e.code, ErrorCode::PathRefused, "{bad:?}: {}", e.text);
    }
    // "." is the root: the whole tree, under the local name the client gives it.
    let opts = transfer::FetchOptions {
        recursive: true,
        root_name: Some("mirror".into()),
        ..Default::default()
    };
    let got = match transfer::fetch(&mut s.client, ".", s.out.path(), &opts, &mut NoProgress) {
        Ok(transfer::Fetch::Tree(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(got.dir, s.out.path().join("mirror"));
    assert_eq!(std::fs::read(got.dir.join("d/ok.txt")).unwrap(), b"fine");
    assert_eq!((got.files, got.dirs), (1, 1));
    // Without a local name, the client does not invent one.
    assert!(matches!(
        transfer::fetch(
            &mut s.client,
            ".",
            s.out.path(),
            &fetch_opts(true, false),
            &mut NoProgress
        ),
        Err(TransferError::Refused(_))
    ));
    s.finish();
}

#[test]
fn listing_shows_files_and_directories_but_nothing_outside() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_path_buf();
    let mut s = served(move |root| {
        std::fs::write(root.join("a.txt"), b"aaa").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/b.txt"), b"b").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, root.join("out")).unwrap();
    });
    let top = transfer::list(&mut s.client, "", false).unwrap();
    let names: Vec<_> = top.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["a.txt", "d"]);
    assert_eq!(top[0].size, 3);
    let all = transfer::list(&mut s.client, ".", true).unwrap();
    let names: Vec<_> = all.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["a.txt", "d", "d/b.txt"]);
    let sub = transfer::list(&mut s.client, "d/", false).unwrap();
    assert_eq!(sub[0].path, "d/b.txt");
    s.finish();
}

#[test]
fn a_listing_counts_the_names_it_cannot_serve_but_never_those_the_policy_hides() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_path_buf();
    let setup = move |root: &Path| {
        for who in ["mine", "theirs"] {
            std::fs::create_dir(root.join(who)).unwrap();
            std::fs::write(root.join(who).join("f.txt"), b"f").unwrap();
            // A link leading out of the root, and a staging file: neither is served.
            std::os::unix::fs::symlink(&target, root.join(who).join("out")).unwrap();
            std::fs::write(root.join(who).join(".x.minitls-partial"), b"p").unwrap();
        }
    };
    // No policy: two unservable names in each directory.
    let mut s = served(setup.clone());
    let (entries, hidden) = transfer::list_counted(&mut s.client, "", true).unwrap();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_eq!(hidden, 4);
    s.finish();
    // The client may read only `mine`: what `theirs` holds is not counted either.
    let access = access_under("[[grant]]\nclients = [\"CLIENT\"]\nread = [\"mine\"]\n");
    let mut s = served_with(setup, access);
    let (entries, hidden) = transfer::list_counted(&mut s.client, "", true).unwrap();
    let names: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["mine", "mine/f.txt"]);
    assert_eq!(hidden, 2);
    s.finish();
}

// ---------------------------------------------------------------------------------------------
// A hostile server: a correctly authenticated peer that sends lies.
// ---------------------------------------------------------------------------------------------

/// Runs `script` as the server side of a fetch of "f.txt" and returns the client's result and
/// what is left in its output directory.
fn fetch_from_hostile(
    script: impl FnOnce(&mut Channel<MemEnd>) + Send + 'static,
) -> (Result<transfer::Fetched, TransferError>, Vec<String>) {
    let Pair {
        mut client, server, ..
    } = establish();
    let h = std::thread::spawn(move || {
        let mut server = server;
        let (t, _) = server.recv().unwrap();
        assert_eq!(t, AppType::Request);
        script(&mut server);
        let _ = server.flush();
        // Dropping the channel closes the pipe.
    });
    let out = tempfile::tempdir().unwrap();
    let r = transfer::fetch_file(&mut client, "f.txt", out.path(), &mut NoProgress);
    h.join().unwrap();
    let left = dir_entries(out.path());
    (r, left)
}

fn signed_end(path: &str, data: &[u8], key: &minitls::handshake::LocalIdentity) -> FileEnd {
    let statement = FileStatement {
        path: path.to_string(),
        size: data.len() as u64,
        sha256: crypto::sha256(data),
        signed_at: minitls::pki::now_unix(),
    };
    let signature = crypto::sign(
        key.signer(),
        crypto::FILE_SIGNATURE_CONTEXT,
        &sigfile::statement_digest(&statement),
    )
    .unwrap();
    FileEnd {
        statement,
        signature,
    }
}

fn start(path: &str, size: u64) -> FileStart {
    FileStart {
        path: path.into(),
        size,
        mtime: 0,
        offset: 0,
    }
}

fn integrity_failure(r: &Result<transfer::Fetched, TransferError>) -> bool {
    matches!(r, Err(TransferError::Integrity(_)))
}

#[test]
fn a_file_signed_by_another_key_is_refused_and_nothing_is_left() {
    let (r, left) = fetch_from_hostile(|s| {
        let data = b"evil";
        s.send_msg(AppType::FileStart, &start("f.txt", 4)).unwrap();
        s.send(AppType::Data, data).unwrap();
        let wrong_signer = testkit::stolen_certificate(&test_pki().server, testkit::other_ca_key());
        s.send_msg(AppType::FileEnd, &signed_end("f.txt", data, &wrong_signer))
            .unwrap();
    });
    assert!(integrity_failure(&r), "{r:?}");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn data_that_does_not_match_the_signed_digest_is_refused() {
    let (r, left) = fetch_from_hostile(|s| {
        s.send_msg(AppType::FileStart, &start("f.txt", 4)).unwrap();
        s.send(AppType::Data, b"evil").unwrap();
        s.send_msg(
            AppType::FileEnd,
            &signed_end("f.txt", b"good", &test_pki().server),
        )
        .unwrap();
    });
    assert!(integrity_failure(&r), "{r:?}");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_signature_for_another_path_is_refused() {
    let (r, left) = fetch_from_hostile(|s| {
        s.send_msg(AppType::FileStart, &start("f.txt", 4)).unwrap();
        s.send(AppType::Data, b"data").unwrap();
        s.send_msg(
            AppType::FileEnd,
            &signed_end("other.txt", b"data", &test_pki().server),
        )
        .unwrap();
    });
    assert!(integrity_failure(&r), "{r:?}");
    assert!(left.is_empty());
}

#[test]
fn more_data_than_announced_is_refused() {
    let (r, left) = fetch_from_hostile(|s| {
        s.send_msg(AppType::FileStart, &start("f.txt", 2)).unwrap();
        s.send(AppType::Data, b"data").unwrap();
    });
    assert!(integrity_failure(&r), "{r:?}");
    assert!(left.is_empty());
}

#[test]
fn a_connection_cut_mid_file_leaves_only_a_hidden_partial_file() {
    let (r, left) = fetch_from_hostile(|s| {
        s.send_msg(AppType::FileStart, &start("f.txt", 1000))
            .unwrap();
        s.send(AppType::Data, &[1; 500]).unwrap();
    });
    let err = r.unwrap_err();
    assert!(
        matches!(err, TransferError::Conn(ConnError::Truncated)),
        "{err:?}"
    );
    assert!(err.is_resumable());
    // Nothing at the final path: only the verified-so-far data, hidden, for --resume.
    assert_eq!(left, [".f.txt.minitls-partial"]);
}

#[test]
fn a_bad_record_mid_file_leaves_nothing_at_all() {
    let mut p = establish();
    // The server's answer is queued before the client asks (pipes never block writers), so
    // the test can alter it in flight: the last record gets one flipped bit.
    p.server
        .send_msg(AppType::FileStart, &start("f.txt", 1000))
        .unwrap();
    p.server.send(AppType::Data, &[1; 500]).unwrap();
    p.server.send(AppType::Data, &[2; 500]).unwrap();
    p.server.flush().unwrap();
    let mut bytes = p.s2c.take_all();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    p.s2c.put(&bytes);
    p.s2c.close();
    let out = tempfile::tempdir().unwrap();
    let r = transfer::fetch_file(&mut p.client, "f.txt", out.path(), &mut NoProgress);
    assert!(
        matches!(
            r,
            Err(TransferError::Conn(ConnError::Record(
                RecordError::BadRecord
            )))
        ),
        "{r:?}"
    );
    assert!(!r.unwrap_err().is_resumable());
    assert!(
        dir_entries(out.path()).is_empty(),
        "an integrity failure leaves nothing"
    );
}

#[test]
fn a_server_answering_with_another_file_is_refused() {
    let (r, left) = fetch_from_hostile(|s| {
        s.send_msg(AppType::FileStart, &start("../../etc/passwd", 4))
            .unwrap();
    });
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");
    assert!(left.is_empty());
}

#[test]
fn a_silent_server_hits_the_deadline() {
    let Pair {
        mut client,
        server: _server_stays_open,
        ..
    } = establish();
    client
        .set_deadline(Some(Instant::now() + Duration::from_millis(100)))
        .unwrap();
    assert!(matches!(client.recv(), Err(ConnError::Timeout)));
}

#[test]
fn a_peer_that_never_finishes_the_handshake_hits_the_deadline() {
    let (a, _b) = mem::pair();
    let t = Instant::now();
    let r = conn::server_handshake(
        a,
        test_pki().server_config(),
        Some(Instant::now() + Duration::from_millis(200)),
    );
    assert!(matches!(r, Err(ConnError::Timeout)));
    assert!(t.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// Trees and resume.
// ---------------------------------------------------------------------------------------------

fn fetch_opts(recursive: bool, resume: bool) -> transfer::FetchOptions {
    transfer::FetchOptions {
        recursive,
        resume,
        ..Default::default()
    }
}

fn awkward_tree(root: &Path) {
    let t = root.join("tree");
    std::fs::create_dir_all(t.join("é dir/ünï")).unwrap();
    std::fs::create_dir_all(t.join("empty/nested-empty")).unwrap();
    std::fs::write(t.join("a b.txt"), b"spaces").unwrap();
    std::fs::write(t.join("é dir/ünï/日本.bin"), content(300_000)).unwrap();
    std::fs::write(t.join("x".repeat(200)), b"long name").unwrap();
    std::fs::write(t.join("zero"), b"").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc/passwd", t.join("link-out")).unwrap();
        std::os::unix::fs::symlink("a b.txt", t.join("link-in")).unwrap();
    }
}

#[test]
fn a_tree_with_awkward_names_empty_dirs_and_symlinks_arrives_and_verifies() {
    let mut s = served(awkward_tree);
    let got = match s.fetch_recursive("tree").unwrap() {
        transfer::Fetch::Tree(t) => t,
        other => panic!("{other:?}"),
    };
    let src = s.root_path.join("tree");
    let dst = s.out.path().join("tree");
    assert_eq!(got.dir, dst);
    for f in ["a b.txt", "é dir/ünï/日本.bin", &"x".repeat(200), "zero"] {
        assert_eq!(
            std::fs::read(dst.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(dst.join("empty/nested-empty").is_dir());
    assert_eq!((got.files, got.dirs), (4, 4));
    // The root it created carries the allocator's "top directory" hint, where the file
    // system has one (ext2/3/4; tmpfs refuses it).
    if let Some(probe) = top_dir_flag_supported(s.out.path()) {
        assert!(probe, "the probe reads back");
        assert_eq!(top_dir_flag(&dst), Some(true), "tree root not marked");
    }
    // Symlinks are not followed, and reported.
    assert!(!dst.join("link-out").exists() && !dst.join("link-in").exists());
    let skipped: Vec<_> = got.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(skipped, ["link-in", "link-out"]);
    // No temporary files anywhere; the manifest sits beside the tree.
    let mut names: Vec<String> = walkdir::WalkDir::new(s.out.path())
        .into_iter()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| n.starts_with('.') && !n.starts_with(".tmp"));
    assert!(names.is_empty(), "{names:?}");
    assert!(got.manifest_path.ends_with("tree.minitls-manifest"));

    let anchor = &test_pki().anchor;
    let v = sigfile::verify_tree(&dst, anchor).unwrap();
    assert_eq!((v.files, v.dirs), (4, 4));
    let one = sigfile::verify_file(&dst.join("é dir/ünï/日本.bin"), anchor).unwrap();
    assert_eq!(one.statement.path, "tree/é dir/ünï/日本.bin");
    std::fs::write(dst.join("a b.txt"), b"SPACES").unwrap();
    assert!(matches!(
        sigfile::verify_file(&dst.join("a b.txt"), anchor),
        Err(VerifyError::DigestMismatch)
    ));
    assert!(sigfile::verify_tree(&dst, anchor).is_err());
    s.finish();
}

/// Whether a directory has the ext2/3/4 "top directory" flag (`lsattr -d`: T); None where the
/// flags cannot be read.
fn top_dir_flag(dir: &Path) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{IFlags, ioctl_getflags};
        let f = std::fs::File::open(dir).ok()?;
        ioctl_getflags(&f)
            .ok()
            .map(|fl| fl.contains(IFlags::TOPDIR))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// Sets the flag on a scratch directory under `parent`: None if the file system refuses it,
/// Some(whether it reads back) otherwise.
fn top_dir_flag_supported(parent: &Path) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
        let probe = tempfile::tempdir_in(parent).ok()?;
        let f = std::fs::File::open(probe.path()).ok()?;
        let flags = ioctl_getflags(&f).ok()?;
        ioctl_setflags(&f, flags | IFlags::TOPDIR).ok()?;
        top_dir_flag(probe.path())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = parent;
        None
    }
}

#[test]
fn a_tree_root_that_already_exists_keeps_its_flags() {
    let mut s = served(|r| {
        std::fs::create_dir_all(r.join("t/sub")).unwrap();
        std::fs::write(r.join("t/sub/f"), b"x").unwrap();
    });
    std::fs::create_dir(s.out.path().join("t")).unwrap();
    let before = top_dir_flag(&s.out.path().join("t"));
    s.fetch_recursive("t").unwrap();
    assert_eq!(std::fs::read(s.out.path().join("t/sub/f")).unwrap(), b"x");
    assert_eq!(top_dir_flag(&s.out.path().join("t")), before);
    s.finish();
}

#[test]
fn fetching_a_file_with_recursive_set_fetches_the_file() {
    let mut s = served(|r| std::fs::write(r.join("f"), b"x").unwrap());
    let got = s.fetch_recursive("f").unwrap();
    assert!(matches!(got, transfer::Fetch::File(_)));
    s.finish();
}

/// Runs `script` as a server answering a recursive fetch of "t"; returns the client's result
/// and every path left under the output directory.
fn fetch_tree_from_hostile(
    prepare_out: impl FnOnce(&Path),
    script: impl FnOnce(&mut Channel<MemEnd>) + Send + 'static,
) -> (
    Result<transfer::Fetch, TransferError>,
    Vec<String>,
    tempfile::TempDir,
) {
    let mut p = establish();
    script(&mut p.server);
    p.server.flush().unwrap();
    p.s2c.close();
    let out = tempfile::tempdir().unwrap();
    prepare_out(out.path());
    let r = transfer::fetch(
        &mut p.client,
        "t",
        out.path(),
        &fetch_opts(true, false),
        &mut NoProgress,
    );
    let left = walkdir::WalkDir::new(out.path())
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(out.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    (r, left, out)
}

fn tree_start(files: u64) -> TreeStart {
    TreeStart {
        root: "t".into(),
        files,
        dirs: 0,
        bytes: 0,
    }
}

fn send_file_entry(s: &mut Channel<MemEnd>, path: &str, data: &[u8]) {
    s.send_msg(AppType::FileStart, &start(path, data.len() as u64))
        .unwrap();
    s.send(AppType::Data, data).unwrap();
    s.send_msg(
        AppType::FileDone,
        &FileDone {
            sha256: crypto::sha256(data),
        },
    )
    .unwrap();
}

#[test]
fn a_hostile_server_cannot_write_outside_the_target_with_tree_names() {
    let outside = tempfile::tempdir().unwrap();
    for bad in [
        "../evil",
        "../../evil",
        "/tmp/evil",
        "a/../../evil",
        "a\\..\\evil",
        "C:evil",
        "",
        ".",
        "a//b",
        "a/./b",
        "esc\u{1b}[31m",
        "nul\0",
    ] {
        let (r, left, _out) = fetch_tree_from_hostile(
            |_| {},
            move |s| {
                s.send_msg(AppType::TreeStart, &tree_start(1)).unwrap();
                send_file_entry(s, bad, b"pwned");
            },
        );
        assert!(
            matches!(r, Err(TransferError::UnsafeName { .. })),
            "{bad:?}: {r:?}"
        );
        assert!(left.is_empty(), "{bad:?} left {left:?}");
    }
    // A symlink already under the target is never written through.
    let target = outside.path().to_path_buf();
    let (r, left, _out) = fetch_tree_from_hostile(
        move |out| {
            std::fs::create_dir(out.join("t")).unwrap();
            #[cfg(unix)]
            std::os::unix::fs::symlink(&target, out.join("t/link")).unwrap();
        },
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(1)).unwrap();
            s.send_msg(
                AppType::TreeDir,
                &PathMsg {
                    path: "link".into(),
                },
            )
            .unwrap();
            send_file_entry(s, "link/evil", b"pwned");
        },
    );
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");
    assert_eq!(left, ["t", "t/link"]);
    assert!(dir_entries(outside.path()).is_empty());
    // Nor may the tree's top directory itself be a symlink.
    let target = outside.path().to_path_buf();
    let (r, _, _out) = fetch_tree_from_hostile(
        move |out| {
            #[cfg(unix)]
            std::os::unix::fs::symlink(&target, out.join("t")).unwrap();
        },
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(1)).unwrap();
            send_file_entry(s, "f", b"pwned");
        },
    );
    assert!(matches!(r, Err(TransferError::Refused(_))), "{r:?}");
    assert!(dir_entries(outside.path()).is_empty());
}

#[test]
fn duplicate_names_and_a_foreign_root_are_refused() {
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(2)).unwrap();
            send_file_entry(s, "f", b"one");
            send_file_entry(s, "f", b"two");
        },
    );
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");
    assert!(left.is_empty(), "{left:?}");
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            let mut ts = tree_start(0);
            ts.root = "other".into();
            s.send_msg(AppType::TreeStart, &ts).unwrap();
        },
    );
    assert!(matches!(r, Err(TransferError::Protocol(_))), "{r:?}");
    assert!(left.is_empty());
}

#[test]
fn a_tree_whose_manifest_signature_fails_leaves_nothing() {
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(1)).unwrap();
            s.send_msg(AppType::TreeDir, &PathMsg { path: "d".into() })
                .unwrap();
            send_file_entry(s, "d/f", b"data");
            s.send_msg(
                AppType::TreeEnd,
                &TreeEnd {
                    signed_at: 0,
                    signature: vec![0; 256],
                },
            )
            .unwrap();
        },
    );
    assert!(matches!(r, Err(TransferError::Integrity(_))), "{r:?}");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_file_whose_digest_differs_from_the_servers_fails_the_tree() {
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(1)).unwrap();
            s.send_msg(AppType::FileStart, &start("f", 4)).unwrap();
            s.send(AppType::Data, b"data").unwrap();
            s.send_msg(AppType::FileDone, &FileDone { sha256: [0; 32] })
                .unwrap();
        },
    );
    assert!(matches!(r, Err(TransferError::Integrity(_))), "{r:?}");
    assert!(left.is_empty(), "{left:?}");
}

fn fetch_resume(s: &mut Served, name: &str, resume: bool) -> transfer::Fetched {
    match transfer::fetch(
        &mut s.client,
        name,
        s.out.path(),
        &fetch_opts(false, resume),
        &mut NoProgress,
    )
    .unwrap()
    {
        transfer::Fetch::File(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn resume_sends_only_the_missing_part_and_verifies_the_whole_file() {
    let data = content(3_000_000);
    let d = data.clone();
    let mut s = served(move |r| std::fs::write(r.join("big"), &d).unwrap());
    let partial = s.out.path().join(".big.minitls-partial");
    std::fs::write(&partial, &data[..1_234_567]).unwrap();
    let got = fetch_resume(&mut s, "big", true);
    assert_eq!(got.resumed_from, 1_234_567);
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert!(!partial.exists());
    sigfile::verify_file(&got.path, &test_pki().anchor).unwrap();
    s.finish();
}

#[test]
fn resume_starts_over_when_the_source_changed() {
    let data = content(1_000_000);
    let d = data.clone();
    let mut s = served(move |r| std::fs::write(r.join("big"), &d).unwrap());
    let partial = s.out.path().join(".big.minitls-partial");
    // The partial file holds bytes the server's file does not start with.
    let mut stale = data[..500_000].to_vec();
    stale[1000] ^= 0xff;
    std::fs::write(&partial, &stale).unwrap();
    let got = fetch_resume(&mut s, "big", true);
    assert_eq!(got.resumed_from, 0);
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    // A partial longer than the file also starts over.
    std::fs::write(&partial, content(2_000_000)).unwrap();
    let got = fetch_resume(&mut s, "big", true);
    assert_eq!(got.resumed_from, 0);
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    s.finish();
}

#[test]
fn a_plain_fetch_replaces_a_partial_file() {
    let data = content(100_000);
    let d = data.clone();
    let mut s = served(move |r| std::fs::write(r.join("big"), &d).unwrap());
    let partial = s.out.path().join(".big.minitls-partial");
    std::fs::write(&partial, &data[..50_000]).unwrap();
    let got = fetch_resume(&mut s, "big", false);
    assert_eq!(got.resumed_from, 0);
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert!(!partial.exists());
    s.finish();
}

// Files of 4 MiB and more are hashed on a second thread, and from 16 MiB written with direct
// I/O on a third: the same guarantees hold.
const LARGE: u64 = 20 << 20;

#[test]
fn a_large_transfer_cut_mid_file_keeps_exactly_what_arrived() {
    // Ten full records, then one that ends off any block boundary; every byte position
    // distinct enough that a misplaced record would show.
    let sent = content(10 * 256 * 1024 + 1000);
    let mut p = establish();
    p.server
        .send_msg(AppType::FileStart, &start("f.txt", LARGE))
        .unwrap();
    for record in sent.chunks(256 * 1024) {
        p.server.send(AppType::Data, record).unwrap();
    }
    p.server.flush().unwrap();
    p.s2c.close();
    let out = tempfile::tempdir().unwrap();
    let r = transfer::fetch_file(&mut p.client, "f.txt", out.path(), &mut NoProgress);
    assert!(r.unwrap_err().is_resumable());
    assert_eq!(dir_entries(out.path()), [".f.txt.minitls-partial"]);
    // Everything that arrived was written before the error was returned.
    let partial = std::fs::read(out.path().join(".f.txt.minitls-partial")).unwrap();
    assert!(
        partial == sent,
        "the partial file is not exactly the bytes sent"
    );
}

#[test]
fn a_large_transfer_with_too_much_data_or_a_bad_record_leaves_nothing() {
    let chunk = vec![7u8; 256 * 1024];
    let c = chunk.clone();
    let (r, left) = fetch_from_hostile(move |s| {
        s.send_msg(AppType::FileStart, &start("f.txt", LARGE))
            .unwrap();
        // One record more than the announced size holds.
        for _ in 0..=LARGE / c.len() as u64 {
            s.send(AppType::Data, &c).unwrap();
        }
    });
    assert!(integrity_failure(&r), "{r:?}");
    assert!(left.is_empty(), "{left:?}");

    let mut p = establish();
    p.server
        .send_msg(AppType::FileStart, &start("f.txt", LARGE))
        .unwrap();
    for _ in 0..8 {
        p.server.send(AppType::Data, &chunk).unwrap();
    }
    p.server.flush().unwrap();
    let mut bytes = p.s2c.take_all();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    p.s2c.put(&bytes);
    p.s2c.close();
    let out = tempfile::tempdir().unwrap();
    let r = transfer::fetch_file(&mut p.client, "f.txt", out.path(), &mut NoProgress);
    assert!(
        matches!(
            r,
            Err(TransferError::Conn(ConnError::Record(
                RecordError::BadRecord
            )))
        ),
        "{r:?}"
    );
    assert!(dir_entries(out.path()).is_empty());
}

#[test]
fn an_unchanged_file_is_served_again_from_the_signed_statement_cache_and_a_changed_one_is_not() {
    let data = content(LARGE as usize + 12_345);
    let d = data.clone();
    let mut s = served(move |root| std::fs::write(root.join("big.bin"), &d).unwrap());
    let first =
        transfer::fetch_file(&mut s.client, "big.bin", s.out.path(), &mut NoProgress).unwrap();
    let sig1 = std::fs::read(&first.signature_path).unwrap();
    // Second time: the cached statement and signature, the same bytes, still verifying.
    let second =
        transfer::fetch_file(&mut s.client, "big.bin", s.out.path(), &mut NoProgress).unwrap();
    assert_eq!(std::fs::read(&second.path).unwrap(), data);
    assert_eq!(
        std::fs::read(&second.signature_path).unwrap(),
        sig1,
        "the signature was reused"
    );
    sigfile::verify_file(&second.path, &test_pki().anchor).unwrap();
    // Rewritten with other bytes of the same size: a new version, hashed and signed anew.
    let mut changed = data.clone();
    changed[LARGE as usize] ^= 0xff;
    std::fs::write(s.root_path.join("big.bin"), &changed).unwrap();
    let third =
        transfer::fetch_file(&mut s.client, "big.bin", s.out.path(), &mut NoProgress).unwrap();
    assert_eq!(std::fs::read(&third.path).unwrap(), changed);
    assert_ne!(std::fs::read(&third.signature_path).unwrap(), sig1);
    sigfile::verify_file(&third.path, &test_pki().anchor).unwrap();
    s.finish();
}

#[test]
fn two_names_for_one_file_each_get_their_own_signed_statement() {
    let data = content(LARGE as usize);
    let d = data.clone();
    let mut s = served(move |root| {
        std::fs::write(root.join("real.bin"), &d).unwrap();
        std::os::unix::fs::symlink("real.bin", root.join("link.bin")).unwrap();
    });
    for name in ["real.bin", "link.bin", "real.bin", "link.bin"] {
        let got = transfer::fetch_file(&mut s.client, name, s.out.path(), &mut NoProgress)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(std::fs::read(&got.path).unwrap(), data);
        let v = sigfile::verify_file(&got.path, &test_pki().anchor).unwrap();
        assert_eq!(v.statement.path, name);
    }
    s.finish();
}

#[test]
fn clients_fetching_a_new_file_at_once_all_get_it_signed_and_whole() {
    // Four connections to one server state (one cache), all asking for a file not yet hashed:
    // one background digest serves them all, and each file verifies.
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("public");
    std::fs::create_dir(&root_path).unwrap();
    let data = content(LARGE as usize + 777);
    std::fs::write(root_path.join("new.bin"), &data).unwrap();
    let root = std::sync::Arc::new(ServeRoot::new(&root_path).unwrap());
    let cache = std::sync::Arc::new(StatementCache::new());
    let mut handles = Vec::new();
    for i in 0..4 {
        let Pair { client, server, .. } = establish();
        let (root, cache) = (root.clone(), cache.clone());
        let srv = std::thread::spawn(move || {
            let mut server = server;
            let opts = ServeOptions {
                root: &root,
                identity: &test_pki().server,
                idle_timeout: Duration::from_secs(10),
                cache: Some(&cache),
                log: &|_| {},
                access: &Access::default_read_all(),
                audit: &|_| {},
                max_upload: minitls::transfer::upload::DEFAULT_MAX_UPLOAD,
                session: None,
            };
            transfer::serve_requests(&mut server, &opts)
        });
        let out = dir.path().join(format!("out{i}"));
        let cli = std::thread::spawn(move || {
            let mut client = client;
            let got = transfer::fetch_file(&mut client, "new.bin", &out, &mut NoProgress);
            transfer::close(&mut client).unwrap();
            got
        });
        handles.push((srv, cli));
    }
    let mut digests = std::collections::HashSet::new();
    for (srv, cli) in handles {
        let got = cli.join().unwrap().unwrap();
        srv.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), data);
        let v = sigfile::verify_file(&got.path, &test_pki().anchor).unwrap();
        digests.insert(v.statement.sha256);
    }
    assert_eq!(digests.len(), 1);
    assert_eq!(cache.len(), 1, "one signed statement for the one version");
}

// ---- Issue 10: hostile trees, directory swaps, long names ----

fn send_skip(s: &mut Channel<MemEnd>, path: &str) {
    s.send_msg(
        AppType::Skipped,
        &SkippedMsg {
            path: path.into(),
            reason: "read failed".into(),
        },
    )
    .unwrap();
}

#[test]
fn a_name_that_is_both_a_file_and_a_directory_is_refused_before_anything_is_created() {
    // A file `a`, then a file `a/b` inside it.
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(2)).unwrap();
            send_file_entry(s, "a", b"file");
            send_file_entry(s, "a/b", b"inside a file");
        },
    );
    assert!(
        matches!(&r, Err(TransferError::Protocol(m)) if m.contains("sent as a file")),
        "{r:?}"
    );
    assert!(left.is_empty(), "{left:?}");
    // A directory `d` with a file in it, then a file `d`.
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(2)).unwrap();
            s.send_msg(AppType::TreeDir, &PathMsg { path: "d".into() })
                .unwrap();
            send_file_entry(s, "d/f", b"x");
            send_file_entry(s, "d", b"now a file");
        },
    );
    assert!(
        matches!(&r, Err(TransferError::Protocol(m)) if m.contains("twice")),
        "{r:?}"
    );
    assert!(left.is_empty(), "{left:?}");
    // A file in a directory that was never announced (its prefix could be anything later).
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(1)).unwrap();
            send_file_entry(s, "x/y", b"x");
        },
    );
    assert!(
        matches!(&r, Err(TransferError::Protocol(m)) if m.contains("before its directory")),
        "{r:?}"
    );
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_skip_cannot_reopen_a_name() {
    // `x` is sent, then "skipped" under another entry's name: refused.
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(2)).unwrap();
            s.send_msg(AppType::FileStart, &start("x", 4)).unwrap();
            s.send(AppType::Data, b"data").unwrap();
            send_skip(s, "y");
            send_file_entry(s, "x", b"again");
        },
    );
    assert!(
        matches!(&r, Err(TransferError::Protocol(m)) if m.contains("another entry")),
        "{r:?}"
    );
    assert!(left.is_empty(), "{left:?}");
    // Skipped under its own name, `x` stays taken: sending it again is refused.
    let (r, left, _o) = fetch_tree_from_hostile(
        |_| {},
        |s| {
            s.send_msg(AppType::TreeStart, &tree_start(2)).unwrap();
            s.send_msg(AppType::FileStart, &start("x", 4)).unwrap();
            s.send(AppType::Data, b"data").unwrap();
            send_skip(s, "x");
            send_file_entry(s, "x", b"again");
        },
    );
    assert!(
        matches!(&r, Err(TransferError::Protocol(m)) if m.contains("twice")),
        "{r:?}"
    );
    assert!(left.is_empty(), "{left:?}");
}

fn fetch_with_hook(
    s: &mut Served,
    name: &str,
    hook: transfer::land::LandHook,
) -> Result<transfer::Fetch, TransferError> {
    let opts = transfer::FetchOptions {
        recursive: true,
        hook,
        ..Default::default()
    };
    transfer::fetch(&mut s.client, name, s.out.path(), &opts, &mut NoProgress)
}

/// Renames `dir` away (to `dir.moved`) and puts a symlink to `target` in its place.
fn swap_for_symlink(dir: &Path, target: &Path) {
    let mut moved = dir.as_os_str().to_owned();
    moved.push(".moved");
    std::fs::rename(dir, &moved).unwrap();
    std::os::unix::fs::symlink(target, dir).unwrap();
}

#[test]
fn a_directory_swapped_for_a_symlink_cannot_redirect_a_write() {
    let tree = |r: &Path| {
        std::fs::create_dir_all(r.join("t/sub")).unwrap();
        std::fs::write(r.join("t/sub/evil"), b"must stay inside").unwrap();
    };
    // 1. Into an existing tree: between the client's check of OUT/t/sub and its rename of the
    //    verified file into it, someone swaps sub for a link to another directory.
    let outside = tempfile::tempdir().unwrap();
    let mut s = served(tree);
    std::fs::create_dir_all(s.out.path().join("t/sub")).unwrap();
    let target = outside.path().to_path_buf();
    let swapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = swapped.clone();
    let hook = transfer::land::LandHook::new(move |step| {
        if let transfer::land::LandStep::Rename { dir, name: "evil" } = step
            && !flag.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            swap_for_symlink(dir, &target);
        }
    });
    let r = fetch_with_hook(&mut s, "t", hook);
    assert!(
        swapped.load(std::sync::atomic::Ordering::SeqCst),
        "hook ran"
    );
    assert!(
        dir_entries(outside.path()).is_empty(),
        "written through the link: {r:?}"
    );
    // The file went to the directory the client had opened, wherever it was moved.
    if r.is_ok() {
        assert_eq!(
            std::fs::read(s.out.path().join("t/sub.moved/evil")).unwrap(),
            b"must stay inside"
        );
    }
    s.finish();

    // 2. Into a new tree: the staging directory's subdirectory is swapped before the file is
    //    created in it.
    let outside = tempfile::tempdir().unwrap();
    let mut s = served(tree);
    let target = outside.path().to_path_buf();
    let swapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = swapped.clone();
    let hook = transfer::land::LandHook::new(move |step| {
        if let transfer::land::LandStep::Create { dir, name: "evil" } = step
            && !flag.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            swap_for_symlink(dir, &target);
        }
    });
    let r = fetch_with_hook(&mut s, "t", hook);
    assert!(
        swapped.load(std::sync::atomic::Ordering::SeqCst),
        "hook ran"
    );
    assert!(
        dir_entries(outside.path()).is_empty(),
        "written through the link: {r:?}"
    );
    s.finish();
}

#[test]
fn a_failure_while_merging_into_an_existing_tree_undoes_every_step() {
    let mut s = served(|r| {
        std::fs::create_dir_all(r.join("t/new-dir")).unwrap();
        std::fs::write(r.join("t/a"), b"new a").unwrap();
        std::fs::write(r.join("t/b"), b"new b").unwrap();
        std::fs::write(r.join("t/new-dir/c"), b"new c").unwrap();
    });
    let out_t = s.out.path().join("t");
    std::fs::create_dir(&out_t).unwrap();
    std::fs::write(out_t.join("a"), b"old a").unwrap();
    std::fs::write(out_t.join("mine"), b"not in the tree").unwrap();
    // After `a` was replaced and `new-dir` made, something takes the name `new-dir/c`: the
    // commit fails there and must put everything back.
    let hook = transfer::land::LandHook::new(|step| {
        if let transfer::land::LandStep::Rename { dir, name: "c" } = step {
            std::fs::create_dir(dir.join("c")).unwrap();
        }
    });
    let r = fetch_with_hook(&mut s, "t", hook);
    assert!(r.is_err(), "{r:?}");
    std::fs::remove_dir(out_t.join("new-dir/c")).unwrap(); // the hook's own
    let left: Vec<String> = walkdir::WalkDir::new(s.out.path())
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(s.out.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(left, ["t", "t/a", "t/mine", "t/new-dir"], "{r:?}");
    assert_eq!(std::fs::read(out_t.join("a")).unwrap(), b"old a");
    // new-dir was the hook's doing here (it made c inside it after we created new-dir); our
    // own new-dir could not be removed while c was in it. Without the hook, it all lands:
    std::fs::remove_dir(out_t.join("new-dir")).unwrap();
    s.fetch_recursive("t").unwrap();
    assert_eq!(std::fs::read(out_t.join("a")).unwrap(), b"new a");
    assert_eq!(std::fs::read(out_t.join("new-dir/c")).unwrap(), b"new c");
    assert_eq!(
        std::fs::read(out_t.join("mine")).unwrap(),
        b"not in the tree"
    );
    sigfile::verify_tree(&out_t, &test_pki().anchor).unwrap();
    s.finish();
}

#[test]
fn a_250_byte_name_arrives_and_verifies_single_and_in_a_tree() {
    let long = "n".repeat(250);
    let long_dir = "d".repeat(250);
    let (l, ld) = (long.clone(), long_dir.clone());
    let mut s = served(move |r| {
        std::fs::write(r.join(&l), b"long name").unwrap();
        std::fs::create_dir(r.join(&ld)).unwrap();
        std::fs::write(r.join(&ld).join(&l), b"long name in a tree").unwrap();
    });
    let got = transfer::fetch_file(&mut s.client, &long, s.out.path(), &mut NoProgress).unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), b"long name");
    assert!(got.signature_path.file_name().unwrap().len() <= 255);
    sigfile::verify_file(&got.path, &test_pki().anchor).unwrap();
    let tree = match s.fetch_recursive(&long_dir).unwrap() {
        transfer::Fetch::Tree(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        std::fs::read(tree.dir.join(&long)).unwrap(),
        b"long name in a tree"
    );
    sigfile::verify_tree(&tree.dir, &test_pki().anchor).unwrap();
    sigfile::verify_file(&tree.dir.join(&long), &test_pki().anchor).unwrap();
    // Nothing hidden is left behind.
    let hidden: Vec<String> = dir_entries(s.out.path())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    s.finish();
}

// ---- Issue 11: the access policy, decided by the server ----

/// The rights of the test client certificate under `policy` (its CN is what the grants name).
fn access_under(policy: &str) -> Access {
    let id = ClientId::from_der(&test_pki().client_config().identity.cert_der).unwrap();
    Policy::parse(&policy.replace("CLIENT", &id.common_name))
        .unwrap()
        .access_for(&id)
}

fn two_subtrees(r: &Path) {
    for who in ["alice", "bob"] {
        std::fs::create_dir_all(r.join(who).join("deep")).unwrap();
        std::fs::write(r.join(who).join("f.txt"), format!("{who}'s")).unwrap();
        std::fs::write(r.join(who).join("deep/g.txt"), format!("{who}'s deep")).unwrap();
    }
    std::fs::create_dir_all(r.join("shared/docs")).unwrap();
    std::fs::create_dir_all(r.join("shared/other")).unwrap();
    std::fs::write(r.join("shared/docs/d.txt"), b"doc").unwrap();
    std::fs::write(r.join("shared/other/o.txt"), b"other").unwrap();
    std::fs::write(r.join("top.txt"), b"top").unwrap();
    // A link inside alice's subtree that leads into bob's.
    std::os::unix::fs::symlink("../bob/f.txt", r.join("alice/to-bob")).unwrap();
    std::os::unix::fs::symlink("../bob", r.join("alice/bob-dir")).unwrap();
}

fn not_allowed(r: Result<impl std::fmt::Debug, TransferError>) -> bool {
    matches!(&r, Err(TransferError::Remote { code: ErrorCode::PathRefused, text }) if text.contains("not allowed"))
}

#[test]
fn a_client_reads_its_subtree_and_nothing_else() {
    let access =
        access_under("[[grant]]\nclients = [\"CLIENT\"]\nread = [\"alice\", \"shared/docs\"]");
    let mut s = served_with(two_subtrees, access);
    let out = s.out.path().to_path_buf();
    // Single files.
    transfer::fetch_file(&mut s.client, "alice/f.txt", &out, &mut NoProgress).unwrap();
    for denied in [
        "bob/f.txt",
        "top.txt",
        "shared/other/o.txt",
        "alice/to-bob",
        "alice/bob-dir/f.txt",
        "nothing-here/x",
        "alice/../bob/f.txt",
        "./bob/f.txt",
    ] {
        let r = transfer::fetch_file(&mut s.client, denied, &out, &mut NoProgress);
        if denied.split('/').any(|c| c == "." || c == "..") {
            // Refused before it leaves the client; the server would refuse it too.
            assert!(
                matches!(r, Err(TransferError::BadRequestPath { .. })),
                "{denied}: {r:?}"
            );
        } else {
            assert!(not_allowed(r), "{denied}");
        }
    }
    // A recursive fetch of a directory on the way gets only the readable part; of the whole
    // root, only alice/ and shared/docs/.
    let t = match s.fetch_recursive("shared").unwrap() {
        transfer::Fetch::Tree(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(t.dir.join("docs/d.txt").is_file());
    assert!(!t.dir.join("other").exists());
    assert!(not_allowed(s.fetch_recursive("bob")));
    // Listings show only what may be read and the way to it.
    let all: Vec<String> = transfer::list(&mut s.client, "", true)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(all.contains(&"alice/f.txt".to_string()), "{all:?}");
    assert!(
        all.contains(&"shared".to_string()) && all.contains(&"shared/docs/d.txt".to_string()),
        "{all:?}"
    );
    for hidden in [
        "bob",
        "top.txt",
        "shared/other",
        "alice/to-bob",
        "alice/bob-dir",
    ] {
        assert!(
            !all.iter()
                .any(|p| p == hidden || p.starts_with(&format!("{hidden}/"))),
            "{hidden} listed: {all:?}"
        );
    }
    assert!(not_allowed(transfer::list(&mut s.client, "bob", false)));
    s.finish();
}

#[test]
fn a_policy_without_a_grant_for_the_client_allows_nothing() {
    let access = access_under("[[grant]]\nclients = [\"someone-else\"]\nread = [\".\"]");
    let mut s = served_with(two_subtrees, access);
    let out = s.out.path().to_path_buf();
    assert!(not_allowed(transfer::fetch_file(
        &mut s.client,
        "top.txt",
        &out,
        &mut NoProgress
    )));
    assert!(not_allowed(s.fetch_recursive("alice")));
    assert!(not_allowed(transfer::list(&mut s.client, "", false)));
    assert!(dir_entries(&out).is_empty());
    s.finish();
}

#[test]
fn a_file_on_the_way_to_a_grant_is_visible_but_not_readable() {
    // A grant below a name that turns out to be a file makes the file "on the way": it may
    // not be fetched, recursively or not, nor listed.
    let access = access_under("[[grant]]\nclients = [\"CLIENT\"]\nread = [\"alice/f.txt/below\"]");
    let mut s = served_with(two_subtrees, access);
    let out = s.out.path().to_path_buf();
    assert!(not_allowed(transfer::fetch_file(
        &mut s.client,
        "alice/f.txt",
        &out,
        &mut NoProgress
    )));
    assert!(not_allowed(s.fetch_recursive("alice/f.txt")));
    assert!(not_allowed(transfer::list(
        &mut s.client,
        "alice/f.txt",
        false
    )));
    assert!(dir_entries(&out).is_empty());
    s.finish();
}

#[test]
fn a_tree_file_continued_from_bytes_the_client_does_not_hold_is_refused_and_nothing_is_left() {
    let Pair {
        mut client, server, ..
    } = establish();
    let h = std::thread::spawn(move || {
        let mut server = server;
        let (t, _) = server.recv().unwrap();
        assert_eq!(t, AppType::Request);
        server
            .send_msg(
                AppType::TreeStart,
                &TreeStart {
                    root: "d".into(),
                    files: 1,
                    dirs: 0,
                    bytes: 10,
                },
            )
            .unwrap();
        // "You hold the first 5 bytes": the client holds nothing of it.
        server
            .send_msg(
                AppType::FileStart,
                &FileStart {
                    path: "x".into(),
                    size: 10,
                    mtime: 0,
                    offset: 5,
                },
            )
            .unwrap();
        let _ = server.flush();
    });
    let out = tempfile::tempdir().unwrap();
    let opts = fetch_opts(true, true);
    let r = transfer::fetch(&mut client, "d", out.path(), &opts, &mut NoProgress);
    h.join().unwrap();
    assert!(
        matches!(&r, Err(TransferError::Protocol(m)) if m.contains("not what we hold")),
        "{r:?}"
    );
    assert!(
        dir_entries(out.path()).is_empty(),
        "{:?}",
        dir_entries(out.path())
    );
}

#[test]
fn a_client_that_lists_more_held_files_than_the_server_keeps_is_cut_off() {
    use minitls::transfer::server::MAX_HAVE_BYTES;
    use minitls::wire::{HaveEntry, TreeHave};
    let mut s = served(|_| {});
    let entry = |i: usize| HaveEntry {
        path: format!("{i:0>1000}"),
        size: 1,
        sha256: [0; 32],
    };
    // Batches of 200 names of 1,000 bytes, one record each, until past the bound.
    let batches = MAX_HAVE_BYTES / (200 * 1_000) + 1;
    for b in 0..batches {
        let entries = (b * 200..(b + 1) * 200).map(entry).collect();
        s.client
            .send_msg(AppType::TreeHave, &TreeHave { entries })
            .unwrap();
    }
    let _ = s.client.flush();
    let served = s.server.join().unwrap();
    assert!(
        matches!(&served, Err(ConnError::Protocol(m)) if m.contains("files it holds")),
        "{served:?}"
    );
}

#[test]
fn a_kept_partial_tree_of_the_same_name_does_not_stop_a_file_fetch() {
    let mut s = served(|root| std::fs::write(root.join("f.txt"), b"file").unwrap());
    let kept = s.out.path().join(".f.txt.minitls-partial");
    std::fs::create_dir_all(kept.join("sub")).unwrap();
    std::fs::write(kept.join("sub/x"), b"x").unwrap();
    let got = transfer::fetch_file(&mut s.client, "f.txt", s.out.path(), &mut NoProgress).unwrap();
    assert_eq!(std::fs::read(got.path).unwrap(), b"file");
    assert!(!kept.exists());
    s.finish();
}
