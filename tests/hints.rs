//! Errors about credentials point at the real problem (issue 12 item 6): an unreadable key is a
//! permission problem, never a reason to issue a new one.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::{Workspace, fails};

/// The uid and gid of `nobody`: root reads files whatever their mode, so as root the command
/// runs as nobody.
const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    let o = Command::new("id").arg("-u").output().expect("id(1) runs");
    String::from_utf8_lossy(&o.stdout).trim() == "0"
}

fn chown_tree(p: &Path, uid: u32) {
    chown(p, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn an_unreadable_key_is_reported_as_permission_denied_not_as_missing() {
    let w = Workspace::new();
    let as_root = running_as_root();
    if as_root {
        if let Err(e) = Command::new("true").uid(NOBODY).gid(NOBODY).status() {
            eprintln!("note: skipping: running as root and cannot switch to uid {NOBODY}: {e}");
            return;
        }
        chown_tree(w.path(), NOBODY);
    }
    for key in ["ca/client.key", "ca/ca.key"] {
        fs::set_permissions(w.join(key), fs::Permissions::from_mode(0o000)).unwrap();
    }
    let run = |args: &[&str]| {
        let mut cmd = common::minitls(w.path());
        cmd.args(args);
        if as_root {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd.output().expect("minitls runs")
    };
    let line = fails(&run(&["fetch", "hello.txt", "--server", "127.0.0.1:9"]));
    assert!(
        line.contains("cannot read ca/client.key: permission denied"),
        "{line}"
    );
    assert!(!line.contains("ca issue"), "{line}");
    assert!(line.contains("mode and owner"), "{line}");

    let line = fails(&run(&[
        "ca",
        "issue",
        "--role",
        "client",
        "bob",
        "--out-cert",
        "b.crt",
        "--out-key",
        "b.key",
        "--key-bits",
        "2048",
    ]));
    assert!(
        line.contains("cannot read ca/ca.key: permission denied"),
        "{line}"
    );
    assert!(!line.contains("ca init"), "{line}");
}

#[test]
fn a_missing_key_still_suggests_issuing_one() {
    let w = Workspace::new();
    fs::remove_file(w.join("ca/client.key")).unwrap();
    let line = fails(&w.run(&["fetch", "hello.txt", "--server", "127.0.0.1:9"]));
    assert!(line.contains("ca/client.key is missing"), "{line}");
    assert!(line.contains("minitls ca issue --role client"), "{line}");
}
