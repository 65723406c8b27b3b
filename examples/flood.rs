//! Honest fetches under a handshake flood (issue 10), against a running `minitls serve`.
//! `bench/flood.sh` sets everything up and runs this.
//!
//! For each scenario: HONEST sequential fetches of a small file with no attack (the baseline),
//! then the same while ONE_ADDR connections trickle ClientHello bytes from one address and
//! OTHERS connections do the same from as many other loopback addresses (127.0.1.x, ...),
//! reconnecting whenever the server cuts them. Prints, per phase, the success rate and the
//! median and 90th-percentile latency, and during the attack the server's peak resident
//! memory and thread count (from /proc) and how many attack connections were opened (each one
//! past the first of a trickler means the server cut one).
//!
//!   flood ADDR CA_DIR REMOTE_FILE SHA256_HEX SERVER_PID [HONEST ONE_ADDR OTHERS]
//!
//! Scenarios: the single attacking address is 127.0.0.3 (not the honest client's), then
//! 127.0.0.1 (the honest client's own). Exit status 1 if any honest fetch failed under attack
//! or got wrong bytes.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use minitls::handshake::{ClientConfig, LocalIdentity};
use minitls::pki::{CaDir, Role, TrustAnchor};
use minitls::{crypto, net, sigfile, transfer};

/// A ClientHello frame header (type 1, 256-byte body); the body then trickles one byte per
/// [`TRICKLE_INTERVAL`], so the hello never completes.
const HELLO_HEADER: [u8; 5] = [0x01, 0x00, 0x00, 0x01, 0x00];
const TRICKLE_INTERVAL: Duration = Duration::from_millis(200);
/// The attack threads do nothing but block in I/O: small stacks keep 1,200 of them cheap.
const ATTACK_STACK: usize = 64 * 1024;
/// How long the crowd may take to connect before the measured fetches start.
const CROWD_PATIENCE: Duration = Duration::from_secs(20);

fn connect_from(source: Ipv4Addr, server: SocketAddr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::new(source.into(), 0))?;
    connect(&fd, &server)?;
    Ok(TcpStream::from(fd))
}

fn trickle(source: Ipv4Addr, server: SocketAddr, stop: &AtomicBool, opened: &AtomicU64) {
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect_from(source, server) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let _ = s.set_read_timeout(Some(TRICKLE_INTERVAL));
        for b in HELLO_HEADER.into_iter().chain(std::iter::repeat(0)) {
            if stop.load(Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}

struct Crowd {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Crowd {
    fn start(server: SocketAddr, sources: &[(Ipv4Addr, usize)]) -> Crowd {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for &(source, count) in sources {
            for _ in 0..count {
                let (stop, opened) = (stop.clone(), opened.clone());
                let t = std::thread::Builder::new()
                    .stack_size(ATTACK_STACK)
                    .spawn(move || trickle(source, server, &stop, &opened))
                    .expect("an attack thread");
                threads.push(t);
            }
        }
        Crowd {
            stop,
            opened,
            threads,
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Phase {
    ok: usize,
    total: usize,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

impl Phase {
    fn report(&mut self, name: &str) {
        self.latencies.sort();
        println!(
            "  {name:<28} {:>3}/{:<3} ok ({:5.1}%)  median {:7.1} ms  p90 {:7.1} ms{}",
            self.ok,
            self.total,
            100.0 * self.ok as f64 / self.total.max(1) as f64,
            percentile(&self.latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&self.latencies, 0.9).as_secs_f64() * 1e3,
            self.first_error
                .as_ref()
                .map(|e| format!("  first error: {e}"))
                .unwrap_or_default()
        );
    }
}

fn honest(
    addr: &str,
    config: &ClientConfig,
    remote: &str,
    want: &str,
    out: &Path,
    n: usize,
) -> Phase {
    let mut phase = Phase {
        ok: 0,
        total: n,
        latencies: Vec::new(),
        first_error: None,
    };
    for _ in 0..n {
        let t = Instant::now();
        let r = (|| -> Result<(), String> {
            let mut chan = net::connect(addr, config.clone(), Duration::from_secs(15))
                .map_err(|e| e.to_string())?;
            let got = transfer::fetch_file(&mut chan, remote, out, &mut transfer::NoProgress)
                .map_err(|e| e.to_string())?;
            let _ = transfer::close(&mut chan);
            let bytes = std::fs::read(&got.path).map_err(|e| e.to_string())?;
            let digest = sigfile::hex(&crypto::sha256(&bytes));
            if digest != want {
                return Err(format!("wrong bytes: sha256 {digest}"));
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                phase.ok += 1;
                phase.latencies.push(t.elapsed());
            }
            Err(e) => {
                phase.first_error.get_or_insert(e);
            }
        }
    }
    phase
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!(
            "usage: flood ADDR CA_DIR REMOTE_FILE SHA256_HEX SERVER_PID [HONEST ONE_ADDR OTHERS]"
        );
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let server: SocketAddr = addr.parse().expect("ADDR is IP:PORT");
    let ca = CaDir::new(&args[2]);
    let remote = &args[3];
    let want = &args[4];
    let pid: u32 = args[5].parse().expect("SERVER_PID");
    let num = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    let (n_honest, one_addr, others) = (num(6, 50), num(7, 1000), num(8, 200));

    let identity = Arc::new(LocalIdentity::new(
        ca.load_identity(Role::Client).expect("client credentials"),
    ));
    let anchor: Arc<TrustAnchor> = Arc::new(ca.load_anchor().expect("the CA certificate"));
    let config = ClientConfig::new(identity, anchor, "localhost");
    let out = std::env::temp_dir().join(format!("minitls-flood-{}", std::process::id()));

    let mut failed = false;
    for (label, single) in [
        ("attacker on 127.0.0.3", Ipv4Addr::new(127, 0, 0, 3)),
        (
            "attacker on 127.0.0.1 (the honest client's address)",
            Ipv4Addr::new(127, 0, 0, 1),
        ),
    ] {
        println!(
            "scenario: {one_addr} trickling connections from one address ({label}), {others} from {others} other addresses"
        );
        let mut base = honest(&addr, &config, remote, want, &out, n_honest);
        base.report("no attack");

        let mut sources = vec![(single, one_addr)];
        sources.extend((0..others).map(|i| {
            (
                Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8),
                1,
            )
        }));
        let rss_before = proc_status(pid, "VmRSS:").unwrap_or(0);
        let crowd = Crowd::start(server, &sources);
        let started = Instant::now();
        let size = (one_addr + others) as u64;
        while crowd.opened.load(Ordering::Relaxed) < size && started.elapsed() < CROWD_PATIENCE {
            std::thread::sleep(Duration::from_millis(50));
        }
        let connected_in = started.elapsed();
        // Sample the server while the honest clients fetch.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            std::thread::spawn(move || {
                let (mut rss, mut threads) = (0u64, 0u64);
                while sampling.load(Ordering::Relaxed) {
                    rss = rss.max(proc_status(pid, "VmRSS:").unwrap_or(0));
                    threads = threads.max(proc_status(pid, "Threads:").unwrap_or(0));
                    std::thread::sleep(Duration::from_millis(20));
                }
                (rss, threads)
            })
        };
        let opened_before = crowd.opened.load(Ordering::Relaxed);
        let mut under = honest(&addr, &config, remote, want, &out, n_honest);
        let opened_after = crowd.opened.load(Ordering::Relaxed);
        sampling.store(false, Ordering::Relaxed);
        let (peak_rss, peak_threads) = sampler.join().unwrap_or((0, 0));
        under.report("during the attack");
        println!(
            "  crowd: {} connections opened in {:.1} s before the fetches; {} more (re)connections \
             while they ran (each one past a trickler's first means the server cut one)",
            opened_before,
            connected_in.as_secs_f64(),
            opened_after - opened_before
        );
        println!(
            "  server: RSS {:.1} MiB before, peak {:.1} MiB during; peak {} threads",
            rss_before as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            peak_threads
        );
        drop(crowd);
        if under.ok < under.total {
            failed = true;
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    std::process::exit(i32::from(failed));
}
