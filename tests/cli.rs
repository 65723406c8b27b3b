//! End-to-end tests of the `minitls` binary: real processes, real TCP on 127.0.0.1 (ephemeral
//! ports), a temporary working directory per test.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{HELLO, Workspace, ca_template, copy_dir, fails, fails_with, ok, stderr};

/// Deterministic bytes that do not compress or repeat in any simple way.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lists a directory, or nothing if it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Fetch and verify
// ---------------------------------------------------------------------------------------------

#[test]
fn a_fetched_file_arrives_byte_identical_and_verify_accepts_it() {
    let w = Workspace::new();
    let big = pseudo_random(3 * 1024 * 1024 + 17, 0x1234_5678);
    fs::write(w.join("server_public/big.bin"), &big).unwrap();
    let server = w.serve(&[]);
    // Exactly one `serving` line, naming the canonical directory and the port picked.
    let root = w.join("server_public").canonicalize().unwrap();
    let serving = format!("minitls: serving {} on {}", root.display(), server.addr);
    assert_eq!(server.log().matches("minitls: serving ").count(), 1);
    assert!(server.log().contains(&serving), "{}", server.log());
    assert!(!server.addr.ends_with(":0"), "{}", server.addr);

    let out = ok(&w.run(&["fetch", "hello.txt", "--server", &server.addr]));
    assert_eq!(out, "client_received/hello.txt\n");
    assert_eq!(
        fs::read(w.join("client_received/hello.txt")).unwrap(),
        HELLO.as_bytes()
    );
    assert!(w.join("client_received/hello.txt.minitls-sig").exists());

    // Several megabytes: many records, one signature.
    ok(&w.run(&["fetch", "big.bin", "--server", &server.addr]));
    assert!(fs::read(w.join("client_received/big.bin")).unwrap() == big);

    let out = ok(&w.run(&[
        "verify",
        "client_received/hello.txt",
        "client_received/big.bin",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "OK client_received/hello.txt ({} bytes, signed by 'CN=localhost' at 20",
            HELLO.len()
        )),
        "{out}"
    );
    assert!(lines[0].ends_with("Z)"), "{out}");
    assert!(lines[1].starts_with(&format!("OK client_received/big.bin ({} bytes", big.len())));
    // Nothing but the files and their signatures is left behind (no temporary files).
    let mut left = entries(&w.join("client_received"));
    left.sort();
    assert_eq!(
        left,
        [
            "big.bin",
            "big.bin.minitls-sig",
            "hello.txt",
            "hello.txt.minitls-sig"
        ]
    );
}

#[test]
fn fetch_with_verbose_reports_size_digest_and_signer() {
    let w = Workspace::new();
    let server = w.serve(&["-v"]);
    let o = w.run(&["-v", "fetch", "hello.txt", "--server", &server.addr]);
    assert_eq!(ok(&o), "client_received/hello.txt\n");
    let err = stderr(&o);
    assert!(err.contains("handshake: "), "{err}");
    assert!(err.contains(&format!("{} bytes", HELLO.len())), "{err}");
    assert!(err.contains("sha256 "), "{err}");
    assert!(err.contains("signed by 'CN=localhost'"), "{err}");
    // The server prints its handshake steps with -v too.
    assert!(
        server.wait_for_log("handshake: <- ClientHello"),
        "{}",
        server.log()
    );
}

#[test]
fn quiet_fetch_prints_only_the_path_and_a_quiet_server_only_its_serving_line() {
    let w = Workspace::new();
    let server = w.serve(&["-q"]);
    let o = w.run(&["-q", "fetch", "hello.txt", "--server", &server.addr]);
    assert_eq!(ok(&o), "client_received/hello.txt\n");
    assert_eq!(stderr(&o), "");
    // Give a log line time to appear if one were (wrongly) written.
    assert!(!server.wait_for_log_within("authenticated", Duration::from_millis(300)));
    assert_eq!(server.log().lines().count(), 1, "{}", server.log());
}

#[test]
fn editing_a_received_file_makes_verify_fail_with_exit_status_1() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    ok(&w.run(&["fetch", "hello.txt", "--server", &server.addr]));
    let file = w.join("client_received/hello.txt");

    // Same size, one byte changed.
    let mut bytes = fs::read(&file).unwrap();
    bytes[0] ^= 0x20;
    fs::write(&file, &bytes).unwrap();
    let line = fails(&w.run(&["verify", "client_received/hello.txt"]));
    assert!(line.contains("client_received/hello.txt"), "{line}");
    assert!(line.contains("does not match the signed SHA-256"), "{line}");

    // One byte appended.
    bytes[0] ^= 0x20;
    bytes.push(b'!');
    fs::write(&file, &bytes).unwrap();
    let line = fails(&w.run(&["verify", "client_received/hello.txt"]));
    assert!(line.contains("were signed"), "{line}");

    // Restored: accepted again.
    bytes.pop();
    fs::write(&file, &bytes).unwrap();
    ok(&w.run(&["verify", "client_received/hello.txt"]));
}

#[test]
fn verify_names_the_missing_signature_and_the_missing_ca() {
    let w = Workspace::new();
    fs::create_dir(w.join("loose")).unwrap();
    fs::write(w.join("loose/file.txt"), "x").unwrap();
    let line = fails(&w.run(&["verify", "loose/file.txt"]));
    assert!(line.contains("loose/file.txt.minitls-sig"), "{line}");

    let line = fails(&w.run(&["verify", "loose/file.txt", "--ca-dir", "nowhere"]));
    assert!(line.contains("nowhere/ca.crt"), "{line}");
    assert!(line.contains("--ca-dir"), "{line}");
    assert!(!w.join("nowhere").exists(), "verify must never create a CA");
}

#[test]
fn fetching_a_missing_file_fails_with_one_line_and_writes_nothing() {
    let w = Workspace::new();
    let mut server = w.serve(&[]);
    let line = fails(&w.run(&["fetch", "no-such-file.txt", "--server", &server.addr]));
    assert!(line.contains("no-such-file.txt"), "{line}");
    assert!(line.contains("no such file"), "{line}");
    assert!(entries(&w.join("client_received")).is_empty());
    // The client closed the session politely after the refusal.
    assert!(
        server.wait_for_log("refused 'no-such-file.txt'"),
        "{}",
        server.log()
    );
    assert!(server.is_running());
}

#[test]
fn paths_leading_out_of_the_served_root_are_refused() {
    let w = Workspace::new();
    fs::write(w.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(w.join("secret.txt"), w.join("server_public/out")).unwrap();
    std::os::unix::fs::symlink(w.path(), w.join("server_public/up")).unwrap();
    let server = w.serve(&[]);

    let line = fails(&w.run(&["fetch", "../secret.txt", "--server", &server.addr]));
    assert!(line.contains("'..' components are refused"), "{line}");
    let line = fails(&w.run(&["fetch", "/etc/passwd", "--server", &server.addr]));
    assert!(line.contains("absolute paths are refused"), "{line}");
    // Symlinks are resolved by the server, which refuses what lands outside its root.
    for path in ["out", "up/secret.txt"] {
        let line = fails(&w.run(&["fetch", path, "--server", &server.addr]));
        assert!(
            line.contains("outside the served directory"),
            "{path}: {line}"
        );
    }
    assert!(entries(&w.join("client_received")).is_empty());
    // A listing does not show them either.
    let listing = ok(&w.run(&["ls", "--server", &server.addr]));
    assert!(listing.contains("hello.txt"), "{listing}");
    assert!(
        !listing.contains(" out\n") && !listing.contains(" up\n"),
        "{listing}"
    );
}

#[test]
fn fetching_a_directory_without_recursion_is_a_clear_error() {
    let w = Workspace::new();
    fs::create_dir(w.join("server_public/sub")).unwrap();
    fs::write(w.join("server_public/sub/inner.txt"), "inner").unwrap();
    let server = w.serve(&[]);
    let line = fails(&w.run(&["fetch", "sub", "--server", &server.addr]));
    assert!(line.contains("'sub' is a directory"), "{line}");
    assert!(entries(&w.join("client_received")).is_empty());
    // The file inside it can be fetched, and lands under its own name.
    let out = ok(&w.run(&["fetch", "sub/inner.txt", "--server", &server.addr]));
    assert_eq!(out, "client_received/inner.txt\n");
}

#[test]
fn fetch_refuses_an_out_path_that_is_a_file() {
    let w = Workspace::new();
    fs::write(w.join("notadir"), "").unwrap();
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--out",
        "notadir",
        "--server",
        "127.0.0.1:9",
    ]));
    assert!(line.contains("--out notadir"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[test]
fn a_wrong_server_name_is_refused_by_the_client() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--server-name",
        "files.example.org",
    ]));
    assert!(
        line.contains("does not name \"files.example.org\""),
        "{line}"
    );
    assert!(line.contains("--server-name"), "{line}");
    assert!(entries(&w.join("client_received")).is_empty());
    // The certificate's IP name works as a server name too.
    ok(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--server-name",
        "127.0.0.1",
    ]));
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_and_the_server_keeps_serving() {
    let w = Workspace::new();
    copy_dir(ca_template(1), &w.join("other"));
    let mut server = w.serve(&[]);

    // Trusts the server's CA, but holds a client certificate from another CA.
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--cert",
        "other/client.crt",
        "--key",
        "other/client.key",
        "--ca-cert",
        "ca/ca.crt",
    ]));
    assert!(line.contains("rejected our client certificate"), "{line}");
    assert!(line.contains("--ca-dir"), "{line}");
    assert!(entries(&w.join("client_received")).is_empty());
    assert!(
        server.wait_for_log("client certificate rejected"),
        "{}",
        server.log()
    );

    // The next good client is served.
    assert!(server.is_running());
    ok(&w.run(&["fetch", "hello.txt", "--server", &server.addr]));
}

#[test]
fn a_client_that_trusts_another_ca_refuses_the_server() {
    let w = Workspace::new();
    copy_dir(ca_template(1), &w.join("other"));
    let mut server = w.serve(&[]);
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--ca-dir",
        "other",
    ]));
    assert!(line.contains("server certificate rejected"), "{line}");
    assert!(line.contains("not signed by the configured CA"), "{line}");
    assert!(line.contains("--ca-dir"), "{line}");
    assert!(server.is_running());
}

#[test]
fn explicit_credential_files_that_are_missing_are_errors_naming_them() {
    let w = Workspace::without_ca();
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--cert",
        "missing/client.crt",
        "--key",
        "missing/client.key",
        "--ca-cert",
        "missing/ca.crt",
    ]));
    assert!(line.contains("--cert missing/client.crt"), "{line}");
    assert!(line.contains("no such file"), "{line}");
    let line = fails(&w.run(&[
        "serve",
        "--cert",
        "s.crt",
        "--key",
        "s.key",
        "--ca-cert",
        "ca.crt",
    ]));
    assert!(line.contains("--cert s.crt"), "{line}");
    // Nothing was generated in their place.
    assert!(!w.join("missing").exists());
    assert!(!w.join("ca").exists());
    assert!(!w.join("s.crt").exists());

    // The three flags go together (a usage error from clap, status 2).
    let o = w.run(&["fetch", "hello.txt", "--cert", "c.crt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--key"), "{}", stderr(&o));
    common::assert_no_panic(&stderr(&o));
}

#[test]
fn serve_and_fetch_create_missing_credentials_and_say_so() {
    // The server side: no ca/ at all.
    let w = Workspace::without_ca();
    let server = w.serve(&[]);
    assert!(
        server.log().contains("no CA found in ca"),
        "{}",
        server.log()
    );
    for f in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        assert!(w.join("ca").join(f).exists(), "{f}");
    }
    // A client in the same directory finds them and says nothing about credentials (only
    // the transfer's summary line).
    let o = w.run(&["fetch", "hello.txt", "--server", &server.addr]);
    ok(&o);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("minitls: hello.txt: "),
        "{}",
        stderr(&o)
    );

    // A missing leaf is issued from the existing CA.
    fs::remove_file(w.join("ca/client.crt")).unwrap();
    fs::remove_file(w.join("ca/client.key")).unwrap();
    let o = w.run(&["fetch", "hello.txt", "--server", &server.addr]);
    ok(&o);
    assert!(
        stderr(&o).contains("no client certificate found: issued"),
        "{}",
        stderr(&o)
    );

    // A client elsewhere makes its own CA, says so, and is then (rightly) not trusted.
    let elsewhere = Workspace::without_ca();
    let o = elsewhere.run(&["fetch", "hello.txt", "--server", &server.addr]);
    let line = fails(&o);
    assert!(
        stderr(&o).starts_with("minitls: no CA found in ca"),
        "{}",
        stderr(&o)
    );
    assert!(line.contains("not signed by the configured CA"), "{line}");
}

#[test]
fn serve_refuses_a_missing_directory_and_names_it() {
    let w = Workspace::new();
    let line = fails(&w.run(&["serve", "no-such-dir", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("no-such-dir"), "{line}");
    assert!(line.contains("mkdir"), "{line}");
    let line = fails(&w.run(&[
        "serve",
        "server_public/hello.txt",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(line.contains("not a directory"), "{line}");
}

#[test]
fn fetch_without_a_server_suggests_starting_one() {
    let w = Workspace::new();
    // A port that was free a moment ago.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let line = fails(&w.run(&["fetch", "hello.txt", "--server", &addr]));
    assert!(line.contains("minitls serve"), "{line}");
    assert!(line.contains("--server"), "{line}");
    assert!(!line.contains("os error"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// The CA commands
// ---------------------------------------------------------------------------------------------

#[test]
fn ca_init_refuses_to_overwrite_without_force_and_writes_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let w = Workspace::without_ca();
    let init = ["ca", "init", "--key-bits", "2048"];
    let out = ok(&w.run(&init));
    assert!(out.contains("wrote ca/ca.key"), "{out}");
    assert!(out.contains("SHA-256 fingerprint"), "{out}");
    for key in ["ca.key", "server.key", "client.key"] {
        let mode = fs::metadata(w.join("ca").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key} has mode {mode:o}");
    }
    let first = fs::read(w.join("ca/ca.crt")).unwrap();

    let line = fails(&w.run(&init));
    assert!(line.contains("already exists"), "{line}");
    assert!(line.contains("--force"), "{line}");
    assert_eq!(
        fs::read(w.join("ca/ca.crt")).unwrap(),
        first,
        "the CA was replaced"
    );

    ok(&w.run(&["ca", "init", "--key-bits", "2048", "--force"]));
    assert_ne!(
        fs::read(w.join("ca/ca.crt")).unwrap(),
        first,
        "--force did not replace the CA"
    );

    // Invalid parameters are refused before any work.
    let line = fails(&w.run(&["ca", "init", "--dir", "x", "--key-bits", "1024"]));
    assert!(line.contains("--key-bits 1024"), "{line}");
    assert!(!w.join("x").exists());
}

#[test]
fn ca_issue_makes_a_server_certificate_with_the_names_given() {
    let w = Workspace::new();
    let issue = [
        "ca",
        "issue",
        "--role",
        "server",
        "files.example.org",
        "--san",
        "DNS:files.example.org",
        "--san",
        "IP:10.0.0.7",
        "--key-bits",
        "2048",
    ];
    let line = fails(&w.run(&issue));
    assert!(line.contains("already exists"), "{line}");
    let mut forced = issue.to_vec();
    forced.push("--force");
    let out = ok(&w.run(&forced));
    assert!(out.contains("wrote ca/server.crt"), "{out}");
    let shown = ok(&w.run(&["ca", "show", "ca/server.crt"]));
    assert!(
        shown.contains("DNS:files.example.org, IP:10.0.0.7"),
        "{shown}"
    );
    assert!(shown.contains("serverAuth"), "{shown}");

    let line = fails(&w.run(&["ca", "issue", "--role", "server", "x", "--san", "IP:nope"]));
    assert!(line.contains("IP:nope"), "{line}");
}

#[test]
fn ca_show_prints_subjects_and_fingerprints() {
    let w = Workspace::new();
    let out = ok(&w.run(&["ca", "show"]));
    for header in ["ca/ca.crt", "ca/server.crt", "ca/client.crt"] {
        assert!(out.lines().any(|l| l == header), "{header} missing:\n{out}");
    }
    assert!(
        out.contains("subject:") && out.contains("CN=minitls CA "),
        "{out}"
    );
    assert!(
        out.contains("CN=localhost") && out.contains("CN=client"),
        "{out}"
    );
    assert_eq!(out.matches("SHA-256 fingerprint:").count(), 3, "{out}");
    // The fingerprint is 32 colon-separated hex bytes.
    let fp = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHA-256 fingerprint:"))
        .unwrap()
        .trim();
    assert_eq!(fp.split(':').count(), 32, "{fp}");

    let out = ok(&w.run(&["ca", "show", "ca/client.crt"]));
    assert_eq!(out.matches("SHA-256 fingerprint:").count(), 1, "{out}");
    let line = fails(&w.run(&["ca", "show", "nope.crt"]));
    assert!(line.contains("nope.crt"), "{line}");
    let line = fails(&w.run(&["ca", "show", "--dir", "empty"]));
    assert!(line.contains("ca init"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Interoperability
// ---------------------------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        o.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA, a server and a client certificate made with the openssl CLI alone.
fn openssl_pki(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = openssl test CA\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
    )
    .unwrap();
    fs::write(
        dir.join("server.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .unwrap();
    fs::write(
        dir.join("client.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    #[rustfmt::skip]
    let steps: [&[&str]; 8] = [
        &["req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
          "-out", "ca.crt", "-days", "30", "-config", "ca.cnf", "-extensions", "v3_ca"],
        &["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
          "-out", "server.csr", "-subj", "/CN=localhost"],
        &["x509", "-req", "-sha256", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-set_serial", "2", "-days", "30", "-extfile", "server.ext", "-out", "server.crt"],
        &["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
          "-out", "client.csr", "-subj", "/CN=openssl client"],
        &["x509", "-req", "-sha256", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-set_serial", "3", "-days", "30", "-extfile", "client.ext", "-out", "client.crt"],
        // One key as PKCS#1 (BEGIN RSA PRIVATE KEY), the rest PKCS#8.
        &["rsa", "-in", "server.key", "-out", "server.pkcs1.key", "-traditional"],
        &["verify", "-CAfile", "ca.crt", "server.crt"],
        &["verify", "-CAfile", "ca.crt", "client.crt"],
    ];
    for step in steps {
        openssl(dir, step);
    }
    let pkcs1 = fs::read_to_string(dir.join("server.pkcs1.key")).unwrap();
    assert!(
        pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{pkcs1}"
    );
}

#[test]
fn a_pki_made_with_the_openssl_cli_works_end_to_end() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: the openssl CLI is not installed (.ci/run installs it)");
        return;
    }
    let w = Workspace::without_ca();
    openssl_pki(&w.join("ossl"));
    let server = w.serve(&[
        "--cert",
        "ossl/server.crt",
        "--key",
        "ossl/server.pkcs1.key",
        "--ca-cert",
        "ossl/ca.crt",
    ]);
    let creds = [
        "--cert",
        "ossl/client.crt",
        "--key",
        "ossl/client.key",
        "--ca-cert",
        "ossl/ca.crt",
    ];
    let mut fetch = vec!["fetch", "hello.txt", "--server", &server.addr];
    fetch.extend(creds);
    assert_eq!(ok(&w.run(&fetch)), "client_received/hello.txt\n");
    assert!(
        server.wait_for_log("'CN=openssl client' authenticated"),
        "{}",
        server.log()
    );
    let out = ok(&w.run(&[
        "verify",
        "client_received/hello.txt",
        "--ca-cert",
        "ossl/ca.crt",
    ]));
    assert!(out.contains("signed by 'CN=localhost'"), "{out}");
    // No minitls CA was created along the way.
    assert!(!w.join("ca").exists());
    // The file does not verify against an unrelated CA.
    copy_dir(ca_template(0), &w.join("ca"));
    let line = fails(&w.run(&["verify", "client_received/hello.txt"]));
    assert!(line.contains("not trusted"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------------

#[test]
fn ls_and_ls_json_list_the_served_files() {
    let w = Workspace::new();
    fs::create_dir(w.join("server_public/sub")).unwrap();
    fs::write(w.join("server_public/sub/inner.txt"), "inner!").unwrap();
    fs::write(w.join("server_public/we\"ird.txt"), "").unwrap();
    let server = w.serve(&[]);
    let s = ["--server", server.addr.as_str()];

    let out = ok(&w.run(&[&["ls"][..], &s].concat()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let hello = lines
        .iter()
        .find(|l| l.ends_with(" hello.txt"))
        .expect(&out);
    let fields: Vec<&str> = hello.split_whitespace().collect();
    assert_eq!(fields[0], "-");
    assert_eq!(fields[1], HELLO.len().to_string());
    assert!(fields[2].len() == 20 && fields[2].ends_with('Z') && fields[2].contains('T'));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("d ") && l.ends_with(" sub")),
        "{out}"
    );
    assert!(!out.contains("inner.txt"), "not recursive: {out}");

    let out = ok(&w.run(&[&["ls", "-r"][..], &s].concat()));
    assert!(out.lines().any(|l| l.ends_with(" sub/inner.txt")), "{out}");
    let out = ok(&w.run(&[&["ls", "sub"][..], &s].concat()));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.ends_with(" sub/inner.txt\n"), "{out}");

    let json = ok(&w.run(&[&["ls", "--json"][..], &s].concat()));
    let json = json.trim();
    assert!(json.starts_with('[') && json.ends_with(']'), "{json}");
    assert_eq!(json.matches("{\"name\":").count(), 3, "{json}");
    assert!(
        json.contains(&format!(
            "{{\"name\":\"hello.txt\",\"type\":\"file\",\"size\":{},\"mtime\":\"",
            HELLO.len()
        )),
        "{json}"
    );
    assert!(
        json.contains("{\"name\":\"sub\",\"type\":\"dir\",\"size\":0,"),
        "{json}"
    );
    assert!(json.contains(r#""name":"we\"ird.txt""#), "{json}");

    let line = fails(&w.run(&[&["ls", "nothing-here"][..], &s].concat()));
    assert!(line.contains("nothing-here"), "{line}");

    // A link leading outside is not listed, and ls says one name was left out.
    std::os::unix::fs::symlink("/etc", w.join("server_public/sub/etc")).unwrap();
    let o = w.run(&[&["ls", "sub"][..], &s].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(common::stdout(&o).lines().count(), 1);
    assert!(
        stderr(&o).contains("1 name not listed: the server does not serve links"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Load and hostile peers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_server_at_max_clients_turns_the_next_client_away_and_then_serves_again() {
    use minitls::handshake::{ClientConfig, LocalIdentity};
    use minitls::pki::{CaDir, Role};
    let w = Workspace::new();
    let server = w.serve(&["--max-clients", "1", "--handshake-timeout", "2"]);
    // A connection that says nothing does not hold the only place: only authenticated
    // clients do (issue 10).
    let silent = TcpStream::connect(&server.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ok(&w.run(&["fetch", "hello.txt", "--server", &server.addr]));

    // An authenticated client that stays connected does.
    let ca = CaDir::new(w.join("ca"));
    let config = ClientConfig::new(
        std::sync::Arc::new(LocalIdentity::new(ca.load_identity(Role::Client).unwrap())),
        std::sync::Arc::new(ca.load_anchor().unwrap()),
        "localhost",
    );
    let mut held = minitls::net::connect(&server.addr, config, Duration::from_secs(10)).unwrap();
    // The client's last flight goes out with its first request; this one has none.
    held.complete_handshake().unwrap();
    let o = w.run(&["fetch", "hello.txt", "--server", &server.addr]);
    let line = fails_with(&o, 3);
    assert!(line.contains("busy"), "{line}");
    assert!(line.contains("--max-clients"), "{line}");
    assert!(server.wait_for_log("--max-clients"), "{}", server.log());

    // Once it is gone, the place is free.
    drop(held);
    drop(silent);
    let mut last = None;
    for _ in 0..30 {
        let o = w.run(&["fetch", "hello.txt", "--server", &server.addr]);
        if o.status.success() {
            last = None;
            break;
        }
        last = Some(stderr(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        last.is_none(),
        "the server did not recover: {last:?}\n{}",
        server.log()
    );
}

#[test]
fn a_silent_client_is_dropped_at_the_handshake_deadline() {
    let w = Workspace::new();
    let server = w.serve(&["--handshake-timeout", "1"]);
    let mut silent = TcpStream::connect(&server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    // The server gives up after ~1 s: we see the end of the stream, not our 10 s timeout.
    let started = std::time::Instant::now();
    let _ = silent.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_raw_client_sending_garbage_does_not_stop_the_server() {
    let w = Workspace::new();
    let mut server = w.serve(&["--handshake-timeout", "2"]);
    let junk: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &[0xff; 64],
        &[0x01, 0xff, 0xff, 0xff, 0xff],
        &pseudo_random(100_000, 7),
    ];
    for bytes in junk {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // Connect and hang up at once, too.
    drop(TcpStream::connect(&server.addr).unwrap());

    assert!(server.is_running(), "{}", server.log());
    ok(&w.run(&["fetch", "hello.txt", "--server", &server.addr]));
    common::assert_no_panic(&server.log());
}

#[test]
fn fetch_r_brings_a_whole_tree_and_verify_checks_it_against_one_manifest() {
    let w = Workspace::new();
    let t = w.join("server_public/tree");
    fs::create_dir_all(t.join("sub dir/empty")).unwrap();
    fs::write(t.join("a.txt"), "a").unwrap();
    fs::write(t.join("sub dir/ü.bin"), pseudo_random(70_000, 7)).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("a.txt", t.join("link")).unwrap();
    let server = w.serve(&[]);
    let o = w.run(&["fetch", "-r", "tree", "--server", &server.addr]);
    // The symlink is skipped: the tree is in place and verified but not whole (exit 8).
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert_eq!(common::stdout(&o), "client_received/tree\n");
    assert!(
        stderr(&o).contains("skipped link: symbolic link"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read(w.join("client_received/tree/sub dir/ü.bin")).unwrap(),
        pseudo_random(70_000, 7)
    );
    assert!(w.join("client_received/tree/sub dir/empty").is_dir());
    assert!(w.join("client_received/tree.minitls-manifest").exists());
    let out = ok(&w.run(&[
        "verify",
        "client_received/tree",
        "client_received/tree/a.txt",
    ]));
    assert!(
        out.starts_with("OK client_received/tree (2 files, 2 directories"),
        "{out}"
    );
    fs::write(w.join("client_received/tree/a.txt"), "A").unwrap();
    fails(&w.run(&["verify", "client_received/tree"]));
    fails(&w.run(&["verify", "client_received/tree/a.txt"]));
}

#[test]
fn a_fetch_killed_mid_file_is_continued_by_resume_without_resending_what_arrived() {
    let w = Workspace::new();
    let big = pseudo_random(96 * 1024 * 1024, 99);
    fs::write(w.join("server_public/big.bin"), &big).unwrap();
    let server = w.serve(&[]);
    let mut child = common::minitls(w.path())
        .args(["-q", "fetch", "big.bin", "--server", &server.addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = w.join("client_received/.big.bin.minitls-partial");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fs::metadata(&partial).map_or(0, |m| m.len()) < 4 * 1024 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "no partial data appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "fetch finished too fast to interrupt"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = fs::metadata(&partial).unwrap().len();
    assert!(!w.join("client_received/big.bin").exists());
    assert!(kept > 0 && kept < big.len() as u64, "{kept}");

    let o = w.run(&[
        "-v",
        "fetch",
        "--resume",
        "big.bin",
        "--server",
        &server.addr,
    ]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("resumed: {kept} bytes were already here")),
        "{err}"
    );
    assert!(fs::read(w.join("client_received/big.bin")).unwrap() == big);
    assert!(!partial.exists());
    ok(&w.run(&["verify", "client_received/big.bin"]));
}

// ---------------------------------------------------------------------------------------------
// Never serving secrets or staging files
// ---------------------------------------------------------------------------------------------

#[test]
fn serving_a_directory_that_holds_the_ca_or_the_loaded_key_is_refused() {
    let w = Workspace::new();
    // The project layout: `serve .` would serve ca/ca.key.
    let line = fails(&w.run(&["serve", ".", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("refusing to serve"), "{line}");
    assert!(
        line.contains("CA directory") && line.contains("--ca-dir"),
        "{line}"
    );
    // Serving the CA directory itself.
    let line = fails(&w.run(&["serve", "ca", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("refusing to serve"), "{line}");
    // An explicitly named key inside the served directory.
    fs::create_dir(w.join("server_public/keys")).unwrap();
    fs::copy(w.join("ca/server.key"), w.join("server_public/keys/k.pem")).unwrap();
    let line = fails(&w.run(&[
        "serve",
        "server_public",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "ca/server.crt",
        "--key",
        "server_public/keys/k.pem",
        "--ca-cert",
        "ca/ca.crt",
    ]));
    assert!(line.contains("refusing to serve"), "{line}");
    assert!(line.contains("--key") && line.contains("k.pem"), "{line}");
}

#[test]
fn staging_files_are_never_listed_or_served() {
    let w = Workspace::new();
    let public = w.join("server_public");
    fs::create_dir(public.join("d")).unwrap();
    fs::write(public.join("d/real.txt"), "real").unwrap();
    fs::write(public.join(".big.iso.minitls-partial"), "half a file").unwrap();
    fs::write(public.join("d/.0123456789abcdef.minitls-tmp"), "staged").unwrap();
    fs::create_dir(public.join(".fedcba9876543210.minitls-tmp")).unwrap();
    fs::write(
        public.join(".fedcba9876543210.minitls-tmp/x"),
        "staged tree",
    )
    .unwrap();
    let server = w.serve(&[]);
    let s = ["--server", server.addr.as_str()];

    let out = ok(&w.run(&[&["ls", "-r"][..], &s].concat()));
    assert!(!out.contains("minitls-"), "{out}");
    assert!(out.contains("d/real.txt"), "{out}");
    for name in [
        ".big.iso.minitls-partial",
        "d/.0123456789abcdef.minitls-tmp",
        ".fedcba9876543210.minitls-tmp/x",
    ] {
        let line = fails(&w.run(&[&["fetch", name][..], &s].concat()));
        assert!(line.contains("no such file"), "{name}: {line}");
    }
    ok(&w.run(&[&["fetch", "-r", "d"][..], &s].concat()));
    let got: Vec<String> = fs::read_dir(w.join("client_received/d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(got, ["real.txt"]);
}

#[test]
fn ca_issue_writes_several_clients_to_named_files_and_ca_list_shows_them() {
    let w = Workspace::new();
    for name in ["alice", "bob"] {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        let out = ok(&w.run(&[
            "ca",
            "issue",
            "--role",
            "client",
            name,
            "--key-bits",
            "2048",
            "--out-cert",
            &crt,
            "--out-key",
            &key,
        ]));
        assert!(out.contains(&format!("wrote {key}")), "{out}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(w.join(&key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
    // Never overwritten without --force; the message names both ways out.
    let line = fails(&w.run(&[
        "ca",
        "issue",
        "--role",
        "client",
        "alice",
        "--key-bits",
        "2048",
        "--out-cert",
        "alice.crt",
        "--out-key",
        "alice.key",
    ]));
    assert!(
        line.contains("already exists") && line.contains("--force"),
        "{line}"
    );
    // Alice's own certificate gets her in.
    let server = w.serve(&[]);
    ok(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--cert",
        "alice.crt",
        "--key",
        "alice.key",
        "--ca-cert",
        "ca/ca.crt",
    ]));
    assert!(
        server.wait_for_log("client 'CN=alice' authenticated"),
        "{}",
        server.log()
    );
    let list = ok(&w.run(&["ca", "list"]));
    for name in ["alice", "bob"] {
        assert!(
            list.lines().any(|l| l.starts_with("client ")
                && l.contains(&format!(" {name} "))
                && l.ends_with("valid")),
            "{list}"
        );
    }
    let json = ok(&w.run(&["ca", "list", "--json"]));
    assert!(
        json.lines()
            .any(|l| l.contains(r#""name":"alice""#) && l.contains(r#""role":"client""#)),
        "{json}"
    );
}

/// Issues a client certificate NAME.crt / NAME.key in the workspace.
fn issue_client(w: &Workspace, name: &str) -> Vec<String> {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    ok(&w.run(&[
        "ca",
        "issue",
        "--role",
        "client",
        name,
        "--key-bits",
        "2048",
        "--out-cert",
        &crt,
        "--out-key",
        &key,
    ]));
    ["--cert", &crt, "--key", &key, "--ca-cert", "ca/ca.crt"]
        .map(String::from)
        .to_vec()
}

#[test]
fn a_policy_gives_each_client_its_subtree_and_sighup_applies_a_change() {
    let w = Workspace::new();
    for who in ["alice", "bob"] {
        fs::create_dir(w.join(&format!("server_public/{who}"))).unwrap();
        fs::write(w.join(&format!("server_public/{who}/f.txt")), who).unwrap();
    }
    let alice = issue_client(&w, "alice");
    let bob = issue_client(&w, "bob");
    let grants = |alice_reads: &str| {
        format!(
            "[[grant]]\nclients = [\"alice\"]\nread = [{alice_reads}]\n\n\
             [[grant]]\nclients = [\"bob\"]\nread = [\"bob\"]\n"
        )
    };
    fs::write(w.join("policy.toml"), grants("\"alice\"")).unwrap();
    let server = w.serve(&["--policy", "policy.toml"]);
    let run_as = |who: &[String], args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", server.addr.as_str()]);
        if args[0] == "fetch" {
            all.extend(["--out", "got"]);
        }
        all.extend(who.iter().map(String::as_str));
        w.run(&all)
    };
    ok(&run_as(&alice, &["fetch", "alice/f.txt"]));
    let line = fails(&run_as(&alice, &["fetch", "bob/f.txt"]));
    assert!(line.contains("not allowed"), "{line}");
    ok(&run_as(&bob, &["fetch", "bob/f.txt"]));
    let listing = ok(&run_as(&alice, &["ls", "-r"]));
    assert!(
        listing.contains("alice/f.txt") && !listing.contains("bob"),
        "{listing}"
    );
    assert!(
        server.wait_for_log("refused 'bob/f.txt': 'bob/f.txt': not allowed"),
        "{}",
        server.log()
    );
    // Give alice bob's subtree too; SIGHUP applies it to the next connection.
    fs::write(w.join("policy.toml"), grants("\"alice\", \"bob\"")).unwrap();
    common::send_signal(server.pid(), "HUP");
    assert!(
        server.wait_for_log("reloaded the policy"),
        "{}",
        server.log()
    );
    ok(&run_as(&alice, &["fetch", "bob/f.txt"]));
    assert_eq!(fs::read(w.join("got/f.txt")).unwrap(), b"bob");
    // A broken file keeps the policy in force.
    fs::write(w.join("policy.toml"), "[[grant]\n").unwrap();
    common::send_signal(server.pid(), "HUP");
    assert!(
        server.wait_for_log("kept the previous policy"),
        "{}",
        server.log()
    );
    ok(&run_as(&alice, &["fetch", "alice/f.txt"]));
    // And a broken file at start is refused with the reason.
    let line = fails(&w.run(&[
        "serve",
        "--policy",
        "policy.toml",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(
        line.contains("--policy policy.toml") && line.contains("line 1"),
        "{line}"
    );
}

#[test]
fn the_audit_log_has_a_json_line_per_request_and_per_failed_handshake() {
    let w = Workspace::new();
    fs::create_dir(w.join("server_public/secret")).unwrap();
    fs::write(w.join("server_public/secret/s.txt"), "s").unwrap();
    let alice = issue_client(&w, "alice");
    fs::write(
        w.join("policy.toml"),
        "[[grant]]\nclients = [\"alice\"]\nread = [\"hello.txt\", \"missing.txt\"]\n",
    )
    .unwrap();
    let server = w.serve(&["--policy", "policy.toml", "--log-format", "json"]);
    let run_as = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", server.addr.as_str()]);
        all.extend(alice.iter().map(String::as_str));
        w.run(&all)
    };
    ok(&run_as(&["fetch", "hello.txt"]));
    ok(&run_as(&["ls"]));
    fails(&run_as(&["fetch", "secret/s.txt"]));
    fails(&run_as(&["fetch", "missing.txt"]));
    // Not a minitls client at all.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
    }
    // The client no longer waits for the server's goodbye, so a connection's audit line may
    // come a moment after the client exited: wait for each.
    for needle in [
        r#""op":"handshake""#,
        r#""result":"not-found""#,
        r#""result":"denied""#,
    ] {
        assert!(server.wait_for_log(needle), "{needle}: {}", server.log());
    }
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    let keys = [
        "ts", "peer", "conn", "client", "serial", "op", "path", "bytes", "sha256", "result", "ms",
    ];
    for l in &lines {
        for k in keys {
            assert!(l.contains(&format!("\"{k}\":")), "{k} missing: {l}");
        }
    }
    let find = |op: &str, result: &str| {
        lines
            .iter()
            .find(|l| {
                l.contains(&format!(r#""op":"{op}""#))
                    && l.contains(&format!(r#""result":"{result}"#))
            })
            .unwrap_or_else(|| panic!("no {op} {result} line in:\n{log}"))
            .to_string()
    };
    let get = find("get", "ok");
    let sha = minitls::sigfile::hex(&minitls::crypto::sha256(HELLO.as_bytes()));
    assert!(
        get.contains(r#""client":"CN=alice""#) && get.contains(&format!(r#""sha256":"{sha}""#)),
        "{get}"
    );
    assert!(
        get.contains(&format!(r#""bytes":{}"#, HELLO.len())),
        "{get}"
    );
    find("list", "ok");
    let denied = find("get", "denied");
    assert!(denied.contains(r#""path":"secret/s.txt""#), "{denied}");
    find("get", "not-found");
    let hs = find("handshake", "error");
    assert!(hs.contains(r#""client":null"#), "{hs}");
    // Nothing but the serving line and JSON lines.
    for l in log.lines() {
        assert!(
            l.starts_with('{')
                || l.starts_with("minitls: serving ")
                || l.starts_with("minitls: access policy"),
            "{l}"
        );
    }
}

#[test]
fn two_clients_push_into_their_own_subtrees_and_verify_proves_who_uploaded() {
    let w = Workspace::new();
    let alice = issue_client(&w, "alice");
    let bob = issue_client(&w, "bob");
    fs::write(
        w.join("policy.toml"),
        "[[grant]]\nclients = [\"alice\"]\nread = [\"uploads/alice\"]\nwrite = [\"uploads/alice\"]\n\n\
         [[grant]]\nclients = [\"bob\"]\nread = [\"uploads\"]\nwrite = [\"uploads/bob\"]\n",
    )
    .unwrap();
    let server = w.serve(&[
        "--policy",
        "policy.toml",
        "--log-format",
        "json",
        "--max-upload-size",
        "1M",
    ]);
    let run_as = |who: &[String], args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", server.addr.as_str()]);
        all.extend(who.iter().map(String::as_str));
        w.run(&all)
    };
    fs::write(w.join("report.txt"), "alice's report\n").unwrap();
    fs::create_dir_all(w.join("site/css")).unwrap();
    fs::write(w.join("site/index.html"), "<html>").unwrap();
    fs::write(w.join("site/css/a.css"), "a{}").unwrap();
    // alice: a file and a tree into her subtree (made on the way).
    assert_eq!(
        ok(&run_as(
            &alice,
            &["push", "report.txt", "site", "-r", "--to", "uploads/alice"]
        )),
        "uploads/alice/report.txt\nuploads/alice/site\n"
    );
    let stored = w.join("server_public/uploads/alice/report.txt");
    assert_eq!(fs::read(&stored).unwrap(), b"alice's report\n");
    // On the server machine, verify names the client that uploaded it.
    let v = ok(&w.run(&["verify", "server_public/uploads/alice/report.txt"]));
    assert!(
        v.contains("uploaded and signed by client 'CN=alice'"),
        "{v}"
    );
    ok(&w.run(&["verify", "server_public/uploads/alice/site/css/a.css"]));
    // An existing file needs --force; bob cannot write into alice's subtree.
    let line = fails_with(
        &run_as(&alice, &["push", "report.txt", "--to", "uploads/alice"]),
        5,
    );
    assert!(line.contains("--force"), "{line}");
    ok(&run_as(
        &alice,
        &["push", "report.txt", "--to", "uploads/alice", "--force"],
    ));
    let line = fails_with(
        &run_as(&bob, &["push", "report.txt", "--to", "uploads/alice"]),
        5,
    );
    assert!(line.contains("not allowed"), "{line}");
    // Over --max-upload-size: refused before anything is written.
    fs::write(w.join("big.bin"), vec![7u8; (1 << 20) + 1]).unwrap();
    let line = fails_with(
        &run_as(&bob, &["push", "big.bin", "--to", "uploads/bob"]),
        5,
    );
    assert!(line.contains("at most 1048576 bytes"), "{line}");
    assert!(!w.join("server_public/uploads/bob").exists());
    // bob reads what alice uploaded (his read grant covers uploads/) and it verifies.
    ok(&run_as(
        &bob,
        &["fetch", "uploads/alice/report.txt", "--out", "bobs"],
    ));
    // A directory without -r is a usage error, found before connecting.
    fails_with(
        &run_as(&alice, &["push", "site", "--to", "uploads/alice"]),
        2,
    );

    assert!(server.wait_for_log(r#""op":"put""#), "{}", server.log());
    let log = server.log();
    let puts: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with('{') && l.contains(r#""op":"put""#))
        .collect();
    let sha = minitls::sigfile::hex(&minitls::crypto::sha256(b"alice's report\n"));
    assert!(
        puts.iter().any(|l| l.contains(r#""client":"CN=alice""#)
            && l.contains(r#""path":"uploads/alice/report.txt""#)
            && l.contains(&format!(r#""sha256":"{sha}""#))
            && l.contains(r#""result":"ok""#)),
        "{log}"
    );
    assert!(
        puts.iter()
            .any(|l| l.contains(r#""client":"CN=bob""#) && l.contains(r#""result":"denied""#)),
        "{log}"
    );
}

#[test]
fn several_paths_come_over_one_connection_and_a_refused_one_does_not_stop_the_others() {
    let w = Workspace::new();
    fs::create_dir(w.join("server_public/d")).unwrap();
    fs::write(w.join("server_public/a.txt"), "a").unwrap();
    fs::write(w.join("server_public/d/c.txt"), "c").unwrap();
    let server = w.serve(&[]);
    let o = w.run(&[
        "fetch",
        "a.txt",
        "missing.txt",
        "d/c.txt",
        "hello.txt",
        "--server",
        &server.addr,
    ]);
    // Every path that exists arrives, in order; the missing one is one error line, exit 5.
    assert_eq!(
        common::stdout(&o),
        "client_received/a.txt\nclient_received/c.txt\nclient_received/hello.txt\n"
    );
    let line = fails_with(&o, 5);
    assert!(line.contains("missing.txt"), "{line}");
    for f in ["a.txt", "c.txt", "hello.txt"] {
        ok(&w.run(&["verify", &format!("client_received/{f}")]));
    }
    // One connection for all four requests.
    assert!(server.wait_for_log("path=hello.txt"), "{}", server.log());
    let log = server.log();
    let conns: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains(" op=get "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("conn=")))
        .collect();
    assert_eq!(conns.len(), 1, "{log}");
    // Trees and files mixed, with -r; -o is for one file only.
    ok(&w.run(&[
        "fetch",
        "-r",
        "d",
        "a.txt",
        "--out",
        "two",
        "--server",
        &server.addr,
    ]));
    assert_eq!(fs::read(w.join("two/d/c.txt")).unwrap(), b"c");
    assert_eq!(fs::read(w.join("two/a.txt")).unwrap(), b"a");
    let line = fails_with(
        &w.run(&[
            "fetch",
            "a.txt",
            "d/c.txt",
            "-o",
            "x",
            "--server",
            &server.addr,
        ]),
        2,
    );
    assert!(line.contains("--out"), "{line}");
}

#[test]
fn each_kind_of_failure_has_its_exit_status() {
    let w = Workspace::new();
    fs::create_dir(w.join("server_public/tree")).unwrap();
    fs::write(w.join("server_public/tree/f"), "f").unwrap();
    std::os::unix::fs::symlink("f", w.join("server_public/tree/link")).unwrap();
    fs::write(w.join("afile"), "not a directory").unwrap();
    copy_dir(ca_template(1), &w.join("other"));
    let server = w.serve(&[]);
    let s = ["--server", server.addr.as_str()];
    let with = |args: &[&str]| w.run(&[args, &s[..]].concat());
    // 0
    ok(&with(&["fetch", "hello.txt"]));
    // 2: our own checks and clap's
    fails_with(&with(&["fetch", "../x"]), 2);
    assert_eq!(w.run(&["fetch", "--no-such-flag"]).status.code(), Some(2));
    // 3: nothing listens there
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    fails_with(&w.run(&["fetch", "hello.txt", "--server", &closed]), 3);
    // 4: credentials of another CA
    fails_with(&with(&["fetch", "hello.txt", "--ca-dir", "other"]), 4);
    // 5: not found, is a directory
    fails_with(&with(&["fetch", "missing.txt"]), 5);
    fails_with(&with(&["fetch", "tree"]), 5);
    // 6: --out cannot be created
    fails_with(&with(&["fetch", "hello.txt", "--out", "afile/sub"]), 6);
    // 7: a received file altered afterwards
    fs::write(w.join("client_received/hello.txt"), "altered").unwrap();
    fails_with(&w.run(&["verify", "client_received/hello.txt"]), 7);
    // 8: a tree with a skipped entry (a symbolic link) is in place but not whole
    let o = with(&["fetch", "-r", "tree"]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped link"), "{}", stderr(&o));
    assert!(w.join("client_received/tree/f").is_file());
}

#[test]
fn fetch_o_writes_under_another_name_or_to_stdout_only_once_verified() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    let s = ["--server", server.addr.as_str()];
    let with = |args: &[&str]| w.run(&[args, &s[..]].concat());
    // -o FILE: that name, the signature beside it, verify works.
    assert_eq!(
        ok(&with(&["fetch", "hello.txt", "-o", "copy/greeting.txt"])),
        "copy/greeting.txt\n"
    );
    assert_eq!(
        fs::read_to_string(w.join("copy/greeting.txt")).unwrap(),
        HELLO
    );
    assert!(w.join("copy/greeting.txt.minitls-sig").is_file());
    ok(&w.run(&["verify", "copy/greeting.txt"]));
    // -o -: the bytes on stdout, nothing left on disk here.
    let o = with(&["fetch", "hello.txt", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, HELLO.as_bytes());
    assert!(!w.join("client_received").exists());
    // A failure writes nothing to stdout and exits non-zero.
    let o = with(&["fetch", "missing.txt", "-o", "-"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(o.stdout.is_empty());
    // -o with -r is a usage error.
    assert_eq!(
        w.run(&["fetch", "-r", "x", "-o", "y"]).status.code(),
        Some(2)
    );
}
