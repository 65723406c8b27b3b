//! The server's side of interactive sessions (issue 15), without processes: the real request
//! loop (`transfer::serve_requests`) over in-memory pipes with a recording `Session`. Ping and
//! Say are answered with the operator's waiting messages and a Pong, every message is audited
//! under the authenticated connection, an oversized Say ends the connection, and the operator
//! sees what each request is doing.

use std::sync::Mutex;
use std::time::Duration;

use minitls::conn::{self, Channel, ConnError};
use minitls::mem::{self, MemEnd};
use minitls::paths::ServeRoot;
use minitls::policy::Access;
use minitls::testkit;
use minitls::transfer::{self, NoProgress, RequestRecord, ServeOptions, Session};
use minitls::wire::{AppMessage, AppType, DecodeError, MAX_SAY_LEN, TextMsg, put_vec_u16};

#[derive(Default)]
struct Recorder {
    activity: Mutex<Vec<Option<String>>>,
    interactive: Mutex<bool>,
    said: Mutex<Vec<String>>,
    notices: Mutex<Vec<String>>,
}

impl Session for Recorder {
    fn activity(&self, op: Option<String>) {
        self.activity.lock().unwrap().push(op);
    }
    fn interactive(&self) {
        *self.interactive.lock().unwrap() = true;
    }
    fn said(&self, text: &str) {
        self.said.lock().unwrap().push(text.to_string());
    }
    fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap())
    }
}

/// Runs the server loop on a thread over a served directory holding `hello.txt`; `client`
/// talks to it. Returns what the loop returned, what it audited and what the session saw.
fn session(
    notices: &[&str],
    client: impl FnOnce(&mut Channel<MemEnd>) + Send,
) -> (Result<(), ConnError>, Vec<RequestRecord>, Recorder) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hello.txt"), "hello\n").unwrap();
    let serve_root = ServeRoot::new(root.path()).unwrap();
    let pki = testkit::pki();
    let (a, b) = mem::pair();
    let recorder = Recorder::default();
    *recorder.notices.lock().unwrap() = notices.iter().map(|s| s.to_string()).collect();
    let audited = Mutex::new(Vec::new());
    let access = Access::default_read_all();
    let result = std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            let mut chan = conn::server_handshake(b, pki.server_config(), None).unwrap();
            let audit = |r: &RequestRecord| audited.lock().unwrap().push(r.clone());
            let opts = ServeOptions {
                root: &serve_root,
                identity: &pki.server,
                idle_timeout: Duration::from_secs(10),
                cache: None,
                log: &|_| {},
                access: &access,
                audit: &audit,
                max_upload: transfer::upload::DEFAULT_MAX_UPLOAD,
                session: Some(&recorder),
            };
            transfer::serve_requests(&mut chan, &opts)
        });
        let mut chan = conn::client_handshake(a, pki.client_config(), None).unwrap();
        client(&mut chan);
        server.join().unwrap()
    });
    (result, audited.into_inner().unwrap(), recorder)
}

/// Reads up to the Pong; the Notices before it.
fn until_pong(chan: &mut Channel<MemEnd>) -> Vec<String> {
    let mut notices = Vec::new();
    loop {
        match chan.recv_app().unwrap() {
            AppMessage::Notice(n) => notices.push(n.text),
            AppMessage::Pong => return notices,
            other => panic!("got {:?} before the Pong", other.typ()),
        }
    }
}

#[test]
fn a_ping_gets_the_waiting_notices_then_a_pong_and_each_notice_is_audited() {
    let (result, audited, rec) = session(&["one", "two \u{1b}[2J"], |chan| {
        chan.send_app(&AppMessage::Ping).unwrap();
        chan.flush().unwrap();
        assert_eq!(until_pong(chan), ["one", "two \u{1b}[2J"]);
        // Nothing waits any more: a bare Pong.
        chan.send_app(&AppMessage::Ping).unwrap();
        chan.flush().unwrap();
        assert!(until_pong(chan).is_empty());
        transfer::close(chan).unwrap();
    });
    result.unwrap();
    assert!(*rec.interactive.lock().unwrap());
    let notices: Vec<_> = audited.iter().filter(|r| r.op == "notice").collect();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[1].path, "two \u{1b}[2J");
}

#[test]
fn a_say_is_audited_shown_to_the_operator_and_answered() {
    let (result, audited, rec) = session(&[], |chan| {
        chan.send_app(&AppMessage::Say(TextMsg {
            text: "hello operator".into(),
        }))
        .unwrap();
        chan.flush().unwrap();
        assert!(until_pong(chan).is_empty());
        transfer::close(chan).unwrap();
    });
    result.unwrap();
    assert_eq!(*rec.said.lock().unwrap(), ["hello operator"]);
    assert!(
        audited
            .iter()
            .any(|r| r.op == "say" && r.path == "hello operator")
    );
}

#[test]
fn an_oversized_say_ends_the_connection_and_is_not_shown() {
    let (result, audited, rec) = session(&[], |chan| {
        let mut body = Vec::new();
        put_vec_u16(&mut body, &[b'x'; MAX_SAY_LEN + 1]);
        chan.send(AppType::Say, &body).unwrap();
        chan.flush().unwrap();
        assert!(chan.recv_app().is_err(), "the server must not answer it");
    });
    assert!(
        matches!(result, Err(ConnError::Decode(DecodeError::TooLong { .. }))),
        "{result:?}"
    );
    assert!(rec.said.lock().unwrap().is_empty());
    assert!(audited.iter().all(|r| r.op != "say"));
}

#[test]
fn the_operator_sees_what_a_request_is_doing_and_then_idle() {
    let out = tempfile::tempdir().unwrap();
    let (result, _, rec) = session(&[], |chan| {
        transfer::fetch_file(chan, "hello.txt", out.path(), &mut NoProgress).unwrap();
        transfer::list(chan, "", false).unwrap();
        transfer::close(chan).unwrap();
    });
    result.unwrap();
    assert_eq!(
        *rec.activity.lock().unwrap(),
        [
            Some("get hello.txt".to_string()),
            None,
            Some("list .".to_string()),
            None
        ]
    );
    // A client that never polls is not a shell.
    assert!(!*rec.interactive.lock().unwrap());
}
