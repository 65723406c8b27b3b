//! Microbenchmarks of the data path: raw SHA-256 and AES-256-GCM records, and a whole signed
//! file stream between a real server loop and client over in-memory pipes.
//! Run: `cargo bench --bench stream` (release build; prints MB/s, no pass/fail).

use std::time::{Duration, Instant};

use minitls::conn;
use minitls::mem;
use minitls::paths::ServeRoot;
use minitls::record::{DirectionKeys, Opener, Sealer};
use minitls::testkit::pki;
use minitls::transfer::{self, NoProgress, ServeOptions};
use minitls::wire::{FRAME_HEADER_LEN, MAX_RECORD_PAYLOAD};
use sha2::{Digest, Sha256};

const TOTAL: usize = 512 << 20;

fn report(what: &str, bytes: usize, t: Duration) {
    let mbs = bytes as f64 / t.as_secs_f64() / 1e6;
    println!(
        "{what:<44} {mbs:>9.0} MB/s  ({} MiB in {:.3} s)",
        bytes >> 20,
        t.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` builds and runs this binary too
    // (unoptimised, without the flag): there it only has to build.
    if !std::env::args().any(|a| a == "--bench") {
        println!("stream: a benchmark; run it with `cargo bench --bench stream`");
        return;
    }
    let chunk = vec![0x5au8; MAX_RECORD_PAYLOAD];
    let n = TOTAL / chunk.len();

    let t = Instant::now();
    let mut h = Sha256::new();
    for _ in 0..n {
        h.update(&chunk);
    }
    std::hint::black_box(h.finalize());
    report("sha256", TOTAL, t.elapsed());

    let keys = DirectionKeys {
        key: [1; 32],
        iv: [2; 12],
    };
    let mut sealer = Sealer::new(&keys);
    let mut out = Vec::with_capacity(MAX_RECORD_PAYLOAD + 64);
    let mut sealed = Vec::new();
    let t = Instant::now();
    for i in 0..n {
        out.clear();
        sealer.seal(3, &chunk, &mut out).unwrap();
        if i < 64 {
            sealed.push(out.clone());
        }
    }
    report("aes-256-gcm seal, 256 KiB records", TOTAL, t.elapsed());

    let mut opener = Opener::new(&keys);
    let t = Instant::now();
    for rec in &sealed {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(&rec[..FRAME_HEADER_LEN]);
        let mut body = rec[FRAME_HEADER_LEN..].to_vec();
        opener.open(&h, &mut body).unwrap();
    }
    report(
        "aes-256-gcm open, 256 KiB records",
        sealed.len() * chunk.len(),
        t.elapsed(),
    );

    // A whole fetch: server reads, hashes, seals; client opens, hashes, writes, verifies.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let data: Vec<u8> = (0..TOTAL).map(|i| ((i * 31) >> 7) as u8).collect();
    std::fs::write(root.join("big"), &data).unwrap();
    drop(data);
    let (a, b) = mem::pair();
    let p = pki();
    let server = std::thread::spawn(move || {
        let mut chan = conn::server_handshake(b, p.server_config(), None).unwrap();
        let root = ServeRoot::new(&root).unwrap();
        let opts = ServeOptions {
            root: &root,
            identity: &p.server,
            idle_timeout: Duration::from_secs(60),
            cache: None,
            log: &|_| {},
            access: &minitls::policy::Access::default_read_all(),
            audit: &|_| {},
            max_upload: minitls::transfer::upload::DEFAULT_MAX_UPLOAD,
            session: None,
        };
        transfer::serve_requests(&mut chan, &opts).unwrap();
    });
    let mut chan = conn::client_handshake(a, p.client_config(), None).unwrap();
    let out_dir = dir.path().join("out");
    let t = Instant::now();
    let got = transfer::fetch_file(&mut chan, "big", &out_dir, &mut NoProgress).unwrap();
    report(
        "signed fetch over in-memory pipe",
        got.size as usize,
        t.elapsed(),
    );
    transfer::close(&mut chan).unwrap();
    server.join().unwrap();
}
