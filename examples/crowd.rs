//! Load under attack (issue 4), against a running `minitls serve`: LEGIT clients fetch a file at
//! once (full handshake, signed transfer, bytes compared with the expected SHA-256) while GARBAGE
//! connections send malformed input of several kinds and TRICKLE connections send a valid
//! ClientHello one byte every 500 ms. Meanwhile the server's peak memory and thread count are
//! read from /proc. At the end one more legitimate fetch shows the server still serving.
//! `bench/crowd.sh` sets everything up and runs this; exit status 1 if any legitimate fetch
//! failed or got wrong bytes, or a trickler was never cut off.
//!
//!   crowd ADDR CA_DIR REMOTE_FILE SHA256_HEX SERVER_PID OUT_DIR [LEGIT GARBAGE TRICKLE]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minitls::handshake::{self, ClientConfig, LocalIdentity};
use minitls::pki::{CaDir, Role, TrustAnchor};
use minitls::wire::{FrameType, encode_frame};
use minitls::{crypto, net, sigfile, transfer};

/// Longest a trickler waits to be cut off before it counts as "never cut".
const TRICKLE_PATIENCE: Duration = Duration::from_secs(60);

struct Creds {
    identity: Arc<LocalIdentity>,
    anchor: Arc<TrustAnchor>,
}

impl Creds {
    fn config(&self) -> ClientConfig {
        ClientConfig::new(self.identity.clone(), self.anchor.clone(), "localhost")
    }
}

fn fetch_once(
    addr: &str,
    creds: &Creds,
    remote: &str,
    out: &Path,
    want: &str,
) -> Result<(), String> {
    let mut chan =
        net::connect(addr, creds.config(), Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let got = transfer::fetch_file(&mut chan, remote, out, &mut transfer::NoProgress)
        .map_err(|e| e.to_string())?;
    transfer::close(&mut chan).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&got.path).map_err(|e| e.to_string())?;
    let digest = sigfile::hex(&crypto::sha256(&bytes));
    if digest != want {
        return Err(format!("wrong bytes: sha256 {digest}"));
    }
    Ok(())
}

/// One malformed opening, chosen by `i`: what a scanner, a fuzzer or a broken client sends.
fn garbage(i: usize, hello: &[u8]) -> Vec<u8> {
    let mut noise = vec![0u8; 64 + (i * 37) % 4000];
    rand::fill(&mut noise[..]);
    match i % 6 {
        0 => noise,                                                 // random bytes
        1 => vec![0x01, 0xff, 0xff, 0xff, 0xff],                    // oversized length header
        2 => hello[..hello.len() / 2].to_vec(),                     // truncated ClientHello
        3 => [hello, &noise[..]].concat(),                          // valid hello, then junk
        4 => encode_frame(FrameType::Record, &noise),               // a record before any handshake
        _ => b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), // the wrong protocol
    }
}

/// How a garbage connection ended, from the client's side.
fn garbage_conn(addr: &str, payload: &[u8]) -> &'static str {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return "connect failed";
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    if s.write_all(payload).is_err() {
        return "closed by the server";
    }
    let mut first = [0u8; 1];
    match s.read(&mut first) {
        Ok(0) => "closed by the server",
        Ok(_) if first[0] == FrameType::Alert as u8 => "alert, then closed",
        Ok(_) => "answered (a ServerHello: the hello was valid)",
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            "still open after 30 s"
        }
        Err(_) => "reset by the server",
    }
}

/// Sends `hello` one byte every 500 ms; returns how long the server took to cut it off.
fn trickle(addr: &str, hello: &[u8]) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).ok()?;
    let start = Instant::now();
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    for b in hello.iter().cycle() {
        if start.elapsed() > TRICKLE_PATIENCE {
            return None;
        }
        if s.write_all(&[*b]).is_err() {
            return Some(start.elapsed());
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {} // an alert: the close follows
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 6 {
        eprintln!(
            "usage: crowd ADDR CA_DIR REMOTE_FILE SHA256_HEX SERVER_PID OUT_DIR [LEGIT GARBAGE TRICKLE]"
        );
        std::process::exit(2);
    }
    let (addr, remote, want) = (a[0].clone(), a[2].clone(), a[3].to_lowercase());
    let server_pid: u32 = a[4].parse().expect("SERVER_PID is a number");
    let out_root = PathBuf::from(&a[5]);
    let n = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (legit, garbage_n, trickle_n) = (n(6, 64), n(7, 1000), n(8, 100));
    let ca = CaDir::new(&a[1]);
    let creds = Arc::new(Creds {
        identity: Arc::new(LocalIdentity::new(
            ca.load_identity(Role::Client).expect("client credentials"),
        )),
        anchor: Arc::new(ca.load_anchor().expect("CA certificate")),
    });
    // A real ClientHello, for the truncated/junk-after variants and the tricklers.
    let (_, hello) = handshake::client_start(creds.config());

    // Server memory and threads, sampled every 50 ms until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let peak_threads = Arc::new(AtomicU64::new(0));
    let monitor = {
        let (stop, peak_threads) = (stop.clone(), peak_threads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = proc_status(server_pid, "Threads:") {
                    peak_threads.fetch_max(t, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let rss_before = proc_status(server_pid, "VmRSS:").unwrap_or(0);

    let start = Instant::now();
    let cut_times = Arc::new(Mutex::new(Vec::new()));
    let never_cut = Arc::new(AtomicU64::new(0));
    let tricklers: Vec<_> = (0..trickle_n)
        .map(|_| {
            let (addr, hello) = (addr.clone(), hello.clone());
            let (cut_times, never_cut) = (cut_times.clone(), never_cut.clone());
            std::thread::spawn(move || match trickle(&addr, &hello) {
                Some(d) => cut_times.lock().unwrap().push(d.as_secs_f64()),
                None => {
                    never_cut.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Garbage from 16 threads, 1,000 connections in all.
    let outcomes = Arc::new(Mutex::new(std::collections::BTreeMap::<&str, u64>::new()));
    let garbage_threads: Vec<_> = (0..16)
        .map(|t| {
            let (addr, hello, outcomes) = (addr.clone(), hello.clone(), outcomes.clone());
            std::thread::spawn(move || {
                for i in (t..garbage_n).step_by(16) {
                    let how = garbage_conn(&addr, &garbage(i, &hello));
                    *outcomes.lock().unwrap().entry(how).or_default() += 1;
                }
            })
        })
        .collect();
    // The legitimate clients, all at once.
    let failures = Arc::new(Mutex::new(Vec::new()));
    let legit_times = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..legit)
        .map(|i| {
            let (addr, remote, want, creds) =
                (addr.clone(), remote.clone(), want.clone(), creds.clone());
            let (failures, legit_times) = (failures.clone(), legit_times.clone());
            let out = out_root.join(format!("c{i}"));
            std::thread::spawn(move || {
                let t = Instant::now();
                match fetch_once(&addr, &creds, &remote, &out, &want) {
                    Ok(()) => legit_times.lock().unwrap().push(t.elapsed().as_secs_f64()),
                    Err(e) => failures.lock().unwrap().push(format!("client {i}: {e}")),
                }
                let _ = std::fs::remove_dir_all(&out);
            })
        })
        .collect();
    for c in clients {
        let _ = c.join();
    }
    let legit_wall = start.elapsed().as_secs_f64();
    for g in garbage_threads {
        let _ = g.join();
    }
    for t in tricklers {
        let _ = t.join();
    }
    let after = fetch_once(&addr, &creds, &remote, &out_root.join("after"), &want);
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    let hwm = proc_status(server_pid, "VmHWM:").unwrap_or(0);

    let failures = failures.lock().unwrap();
    let mut lt = legit_times.lock().unwrap().clone();
    lt.sort_by(f64::total_cmp);
    let mut ct = cut_times.lock().unwrap().clone();
    ct.sort_by(f64::total_cmp);
    println!(
        "legitimate fetches: {} of {legit} complete with the right bytes, {} failed; all done in {legit_wall:.2} s (per fetch: median {:.2} s, max {:.2} s)",
        lt.len(),
        failures.len(),
        percentile(&lt, 0.5),
        percentile(&lt, 1.0)
    );
    for f in failures.iter().take(5) {
        println!("  {f}");
    }
    println!("garbage connections: {garbage_n}");
    for (how, count) in outcomes.lock().unwrap().iter() {
        println!("  {count:>5}  {how}");
    }
    println!(
        "tricklers: {} of {trickle_n} cut off by the server (after min {:.1} s, median {:.1} s, max {:.1} s); {} never cut within {} s",
        ct.len(),
        percentile(&ct, 0.0),
        percentile(&ct, 0.5),
        percentile(&ct, 1.0),
        never_cut.load(Ordering::Relaxed),
        TRICKLE_PATIENCE.as_secs()
    );
    println!(
        "server: RSS {:.1} MiB before, peak {:.1} MiB (VmHWM, whole life), peak {} threads",
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0,
        peak_threads.load(Ordering::Relaxed)
    );
    match &after {
        Ok(()) => println!("after the crowd: one more fetch ok (the server is still serving)"),
        Err(e) => println!("after the crowd: fetch FAILED: {e}"),
    }
    if !failures.is_empty()
        || lt.len() != legit
        || never_cut.load(Ordering::Relaxed) > 0
        || after.is_err()
    {
        std::process::exit(1);
    }
}
