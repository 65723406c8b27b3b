//! Uploads (`push`) over in-memory pipes: a real server loop with an access policy, the real
//! client, and a hand-driven client that breaks the rules. Each test names the property it
//! pins; each would fail if the check it names were removed from `transfer/upload.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use minitls::conn::{self, Channel, ConnError};
use minitls::crypto::{self, FILE_SIGNATURE_CONTEXT, UPLOAD_SIGNATURE_CONTEXT};
use minitls::mem::{self, MemEnd};
use minitls::paths::ServeRoot;
use minitls::pki::{self, Role};
use minitls::policy::{Access, ClientId, Policy};
use minitls::sigfile;
use minitls::testkit::pki as test_pki;
use minitls::transfer::{
    self, NoProgress, PushOptions, RequestRecord, RequestResult, ServeOptions, StatementCache,
    TransferError,
};
use minitls::wire::{AppMessage, AppType, EntryKind, ErrorCode, FileEnd, FileStatement, PutStart};

/// The policy of these tests: the test client ("client") may write under uploads/client and
/// read everything.
const POLICY: &str = r#"
    [[grant]]
    clients = ["client"]
    read = ["."]
    write = ["uploads/client"]
"#;

fn client_access() -> Access {
    let id = ClientId::from_der(&test_pki().client.cert_der).unwrap();
    Policy::parse(POLICY).unwrap().access_for(&id)
}

struct Server {
    client: Channel<MemEnd>,
    handle: JoinHandle<Result<(), ConnError>>,
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Local files to push from.
    local: tempfile::TempDir,
    audit: Arc<Mutex<Vec<RequestRecord>>>,
}

fn serve(access: Access, max_upload: u64, setup: impl FnOnce(&Path)) -> Server {
    serve_hiding(access, max_upload, setup, &[])
}

/// Like [`serve`], with `hidden` (relative to the root) among the server's own secrets.
fn serve_hiding(
    access: Access,
    max_upload: u64,
    setup: impl FnOnce(&Path),
    hidden: &[&str],
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir(&root).unwrap();
    setup(&root);
    let (a, b) = mem::pair();
    let s = std::thread::spawn(move || conn::server_handshake(b, test_pki().server_config(), None));
    let client = conn::client_handshake(a, test_pki().client_config(), None).unwrap();
    let server = s.join().unwrap().unwrap();
    let mut serve_root = ServeRoot::new(&root).unwrap();
    for h in hidden {
        serve_root.hide(&root.join(h));
    }
    let audit = Arc::new(Mutex::new(Vec::new()));
    let records = audit.clone();
    let handle = std::thread::spawn(move || {
        let mut server = server;
        let cache = Arc::new(StatementCache::new());
        let sink = move |r: &RequestRecord| records.lock().unwrap().push(r.clone());
        let opts = ServeOptions {
            root: &serve_root,
            identity: &test_pki().server,
            idle_timeout: Duration::from_secs(10),
            cache: Some(&cache),
            log: &|_| {},
            access: &access,
            audit: &sink,
            max_upload,
            session: None,
        };
        transfer::serve_requests(&mut server, &opts)
    });
    Server {
        client,
        handle,
        _dir: dir,
        root,
        local: tempfile::tempdir().unwrap(),
        audit,
    }
}

fn serve_client(setup: impl FnOnce(&Path)) -> Server {
    serve(client_access(), 1 << 30, setup)
}

impl Server {
    /// A local file to push.
    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.local.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn push(
        &mut self,
        local: &Path,
        to: &str,
        force: bool,
    ) -> Result<transfer::Pushed, TransferError> {
        transfer::push(
            &mut self.client,
            &test_pki().client,
            local,
            to,
            PushOptions {
                recursive: true,
                force,
            },
            &mut NoProgress,
        )
    }

    fn finish(mut self) -> Vec<RequestRecord> {
        transfer::close(&mut self.client).unwrap();
        self.handle.join().unwrap().unwrap();
        self.audit.lock().unwrap().clone()
    }

    /// Every name under the served root (relative, sorted), to show what an upload left.
    fn tree(&self) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(&self.root)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                e.path()
                    .strip_prefix(&self.root)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        out.sort();
        out
    }

    fn send_put(&mut self, kind: EntryKind, path: &str, size: u64, force: bool) {
        self.client
            .send_app(&AppMessage::Put(PutStart {
                kind,
                force,
                path: path.into(),
                size,
                mtime: 0,
            }))
            .unwrap();
        self.client.flush().unwrap();
    }

    /// The server's answer, as (type, error code if any).
    fn answer(&mut self) -> (AppType, Option<ErrorCode>) {
        match self.client.recv_app().unwrap() {
            AppMessage::Error(e) => (AppType::Error, Some(e.code)),
            m => (m.typ(), None),
        }
    }
}

fn refused_with(r: Result<transfer::Pushed, TransferError>, want: ErrorCode) -> String {
    match r {
        Err(TransferError::Remote { code, text }) if code == want => text,
        other => panic!("expected a refusal {want:?}, got {other:?}"),
    }
}

fn signed_end(path: &str, data: &[u8], context: &[u8]) -> FileEnd {
    let statement = FileStatement {
        path: path.into(),
        size: data.len() as u64,
        sha256: crypto::sha256(data),
        signed_at: pki::now_unix(),
    };
    let signature = crypto::sign(
        test_pki().client.signer(),
        context,
        &sigfile::statement_digest(&statement),
    )
    .unwrap();
    FileEnd {
        statement,
        signature,
    }
}

#[test]
fn a_good_push_is_stored_and_verify_names_the_client_that_uploaded_it() {
    let mut s = serve_client(|_| {});
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let local = s.file("report.bin", &data);
    let pushed = s.push(&local, "uploads/client/q3", false).unwrap();
    assert_eq!(pushed.remote, "uploads/client/q3/report.bin");
    assert_eq!(pushed.sha256, Some(crypto::sha256(&data)));
    let stored = s.root.join("uploads/client/q3/report.bin");
    assert_eq!(std::fs::read(&stored).unwrap(), data);
    let v = sigfile::verify_file(&stored, &test_pki().anchor).unwrap();
    assert_eq!(v.signer_role, Role::Client);
    assert_eq!(v.signer_subject, "CN=client");
    assert_eq!(v.statement.path, "uploads/client/q3/report.bin");
    // The same sidecar with the file altered fails.
    std::fs::write(&stored, b"something else").unwrap();
    assert!(sigfile::verify_file(&stored, &test_pki().anchor).is_err());
    let audit = s.finish();
    let put = audit.iter().find(|r| r.op == "put").unwrap();
    assert_eq!(put.result, RequestResult::Ok);
    assert_eq!(put.bytes, data.len() as u64);
    assert_eq!(put.sha256, Some(crypto::sha256(&data)));
}

#[test]
fn a_tree_is_pushed_directories_first_and_every_file_verifies() {
    let mut s = serve_client(|_| {});
    let t = s.local.path().join("site");
    std::fs::create_dir_all(t.join("css/deep")).unwrap();
    std::fs::write(t.join("index.html"), b"<html>").unwrap();
    std::fs::write(t.join("css/main.css"), b"body{}").unwrap();
    std::fs::write(t.join("css/deep/x.css"), b"").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", t.join("link")).unwrap();
    let pushed = s.push(&t, "uploads/client", false).unwrap();
    assert_eq!((pushed.files, pushed.dirs), (3, 3));
    assert_eq!(pushed.skipped.len(), 1, "the symlink is not followed");
    for f in ["index.html", "css/main.css", "css/deep/x.css"] {
        let p = s.root.join("uploads/client/site").join(f);
        sigfile::verify_file(&p, &test_pki().anchor).unwrap();
    }
    assert!(!s.root.join("uploads/client/site/link").exists());
    s.finish();
}

#[test]
fn without_a_write_grant_nothing_is_written() {
    // No policy: read all, write nothing.
    let mut s = serve(Access::default_read_all(), 1 << 30, |_| {});
    let local = s.file("f.txt", b"data");
    let text = refused_with(
        s.push(&local, "uploads/client", false),
        ErrorCode::PathRefused,
    );
    assert!(text.ends_with("not allowed"), "{text}");
    assert!(s.tree().is_empty(), "{:?}", s.tree());
    let audit = s.finish();
    assert_eq!(audit[0].op, "put");
    assert_eq!(audit[0].result, RequestResult::Denied);
}

#[test]
fn outside_the_granted_subtree_nothing_is_written() {
    let mut s = serve_client(|r| std::fs::create_dir_all(r.join("uploads/bob")).unwrap());
    let local = s.file("f.txt", b"data");
    for to in ["uploads/bob", "uploads", ".", "uploads/clientx"] {
        refused_with(s.push(&local, to, false), ErrorCode::PathRefused);
    }
    assert_eq!(s.tree(), ["uploads", "uploads/bob"]);
    s.finish();
}

#[test]
fn names_that_try_to_leave_the_root_or_pass_for_minitls_files_are_refused() {
    let mut s = serve_client(|_| {});
    for path in [
        "uploads/client/../../etc/x",
        "../x",
        "/etc/passwd",
        "uploads/client/a\0b",
        "uploads//client/x",
        "uploads/client/./x",
        "uploads/client/f.minitls-sig",
        "uploads/client/t.minitls-manifest",
        "uploads/client/.f.minitls-partial",
        "uploads/client/.0011223344556677.minitls-tmp",
        "",
    ] {
        s.send_put(EntryKind::File, path, 4, false);
        assert_eq!(
            s.answer(),
            (AppType::Error, Some(ErrorCode::PathRefused)),
            "{path:?}"
        );
    }
    assert!(s.tree().is_empty(), "{:?}", s.tree());
    s.finish();
}

#[test]
fn a_symlink_inside_the_root_cannot_redirect_an_upload() {
    let mut s = serve_client(|r| {
        std::fs::create_dir_all(r.join("uploads/client")).unwrap();
        std::fs::create_dir_all(r.join("bob")).unwrap();
        std::os::unix::fs::symlink("../../bob", r.join("uploads/client/to-bob")).unwrap();
    });
    let local = s.file("f.txt", b"data");
    refused_with(
        s.push(&local, "uploads/client/to-bob", false),
        ErrorCode::PathRefused,
    );
    // The link itself as the target name: not replaced, not written through.
    let named = s.file("to-bob", b"data");
    refused_with(s.push(&named, "uploads/client", true), ErrorCode::Exists);
    assert_eq!(std::fs::read_dir(s.root.join("bob")).unwrap().count(), 0);
    s.finish();
}

#[test]
fn an_existing_file_is_replaced_only_with_force() {
    let mut s = serve_client(|r| {
        std::fs::create_dir_all(r.join("uploads/client")).unwrap();
        std::fs::write(r.join("uploads/client/f.txt"), b"old").unwrap();
    });
    let local = s.file("f.txt", b"new");
    let text = refused_with(s.push(&local, "uploads/client", false), ErrorCode::Exists);
    assert!(text.contains("--force"), "{text}");
    assert_eq!(
        std::fs::read(s.root.join("uploads/client/f.txt")).unwrap(),
        b"old"
    );
    s.push(&local, "uploads/client", true).unwrap();
    assert_eq!(
        std::fs::read(s.root.join("uploads/client/f.txt")).unwrap(),
        b"new"
    );
    // A directory is never replaced by a file, force or not.
    std::fs::create_dir(s.root.join("uploads/client/d")).unwrap();
    let d = s.file("d", b"x");
    refused_with(s.push(&d, "uploads/client", true), ErrorCode::Exists);
    assert!(s.root.join("uploads/client/d").is_dir());
    s.finish();
}

#[test]
fn an_upload_over_the_size_limit_is_refused_before_any_data_flows() {
    let mut s = serve(client_access(), 1000, |_| {});
    s.send_put(EntryKind::File, "uploads/client/big", 1001, false);
    assert_eq!(s.answer(), (AppType::Error, Some(ErrorCode::TooLarge)));
    assert!(
        s.tree().is_empty(),
        "nothing written, not even the parents: {:?}",
        s.tree()
    );
    // At the limit is fine.
    let local = s.file("ok", &[1; 1000]);
    s.push(&local, "uploads/client", false).unwrap();
    s.finish();
}

#[test]
fn a_bad_client_signature_or_a_statement_that_does_not_match_stores_nothing() {
    let data = b"the uploaded bytes";
    let path = "uploads/client/f";
    let good = signed_end(path, data, UPLOAD_SIGNATURE_CONTEXT);
    // A server-style signature: right key, wrong context string.
    let wrong_context = signed_end(path, data, FILE_SIGNATURE_CONTEXT);
    let mut flipped = good.clone();
    flipped.signature[10] ^= 1;
    let mut other_digest = good.clone();
    other_digest.statement.sha256[0] ^= 1;
    let mut other_path = signed_end("uploads/client/g", data, UPLOAD_SIGNATURE_CONTEXT);
    other_path.statement.path = "uploads/client/g".into();
    let mut short = signed_end(path, &data[..5], UPLOAD_SIGNATURE_CONTEXT);
    short.statement.size = 5;
    // Signed by another key (the server's) under the upload context.
    let mut by_server = good.clone();
    by_server.signature = crypto::sign(
        test_pki().server.signer(),
        UPLOAD_SIGNATURE_CONTEXT,
        &sigfile::statement_digest(&good.statement),
    )
    .unwrap();
    let mut s = serve_client(|_| {});
    for end in [
        wrong_context,
        flipped,
        other_digest,
        other_path,
        short,
        by_server,
    ] {
        s.send_put(EntryKind::File, path, data.len() as u64, false);
        assert_eq!(s.answer(), (AppType::PutReady, None));
        s.client.send_app(&AppMessage::Data(data)).unwrap();
        s.client.send_app(&AppMessage::FileEnd(end)).unwrap();
        s.client.flush().unwrap();
        assert_eq!(
            s.answer(),
            (AppType::Error, Some(ErrorCode::IntegrityFailed))
        );
        assert_eq!(
            s.tree(),
            ["uploads", "uploads/client"],
            "nothing stored, no temp file"
        );
    }
    // The same session still stores a correct upload.
    s.send_put(EntryKind::File, path, data.len() as u64, false);
    assert_eq!(s.answer(), (AppType::PutReady, None));
    s.client.send_app(&AppMessage::Data(data)).unwrap();
    s.client.send_app(&AppMessage::FileEnd(good)).unwrap();
    s.client.flush().unwrap();
    assert_eq!(s.answer(), (AppType::PutDone, None));
    sigfile::verify_file(&s.root.join(path), &test_pki().anchor).unwrap();
    let audit = s.finish();
    assert_eq!(
        audit
            .iter()
            .filter(|r| matches!(r.result, RequestResult::Error(_)))
            .count(),
        6
    );
}

#[test]
fn more_data_than_announced_ends_the_connection_and_stores_nothing() {
    let mut s = serve_client(|_| {});
    s.send_put(EntryKind::File, "uploads/client/f", 4, false);
    assert_eq!(s.answer(), (AppType::PutReady, None));
    s.client.send_app(&AppMessage::Data(b"12345")).unwrap();
    s.client.flush().unwrap();
    let r = s.handle.join().unwrap();
    assert!(matches!(r, Err(ConnError::Protocol(_))), "{r:?}");
    assert_eq!(
        walkdir::WalkDir::new(s.root.join("uploads/client"))
            .min_depth(1)
            .into_iter()
            .count(),
        0
    );
}

#[test]
fn an_upload_cut_mid_file_leaves_nothing() {
    let mut s = serve_client(|_| {});
    s.send_put(EntryKind::File, "uploads/client/f", 1 << 20, false);
    assert_eq!(s.answer(), (AppType::PutReady, None));
    s.client.send_app(&AppMessage::Data(&[9; 100_000])).unwrap();
    s.client.flush().unwrap();
    let Server {
        client,
        handle,
        root,
        _dir,
        ..
    } = s;
    // The connection drops with the upload half sent.
    drop(client);
    let r = handle.join().unwrap();
    assert!(matches!(r, Err(ConnError::Truncated)), "{r:?}");
    let left: Vec<_> = walkdir::WalkDir::new(root.join("uploads/client"))
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_request_type_the_server_does_not_expect_ends_the_connection() {
    let mut s = serve_client(|_| {});
    // Data before any Put.
    s.client.send_app(&AppMessage::Data(b"x")).unwrap();
    s.client.flush().unwrap();
    assert!(matches!(
        s.handle.join().unwrap(),
        Err(ConnError::Protocol(_))
    ));
}

#[test]
fn the_servers_own_secrets_are_never_written_over_whatever_the_grant() {
    let all = {
        let id = ClientId::from_der(&test_pki().client.cert_der).unwrap();
        Policy::parse("[[grant]]\nclients = [\"client\"]\nwrite = [\".\"]\n")
            .unwrap()
            .access_for(&id)
    };
    let mut s = serve_hiding(
        all,
        1 << 30,
        |r| {
            std::fs::create_dir(r.join("ca")).unwrap();
            std::fs::write(r.join("ca/ca.key"), b"secret").unwrap();
        },
        &["ca"],
    );
    let local = s.file("ca.key", b"forged");
    refused_with(s.push(&local, "ca", true), ErrorCode::PathRefused);
    assert_eq!(std::fs::read(s.root.join("ca/ca.key")).unwrap(), b"secret");
    // Elsewhere the same grant writes.
    s.push(&local, "elsewhere", false).unwrap();
    s.finish();
}
