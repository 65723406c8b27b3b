//! Handshake rate: THREADS client threads each connect, complete a full mutually authenticated
//! handshake (certificate checks, signatures, key unwrap, Finished both ways), make one request
//! (answered "not found") and close the session cleanly, then connect again, for SECONDS. With
//! MINITLS_HS_RESUME=1 each thread resumes the session of its previous connection instead (a
//! returning client: ticket, X25519, no RSA; the request travels as early data). Prints the
//! number of completed handshakes per second the server sustained. Used by `bench/compare.sh`; the client work (one RSA signature and
//! three verifications per handshake) runs on the same machine as the server, as curl's does in
//! the anchors' figures.
//!
//!   cargo run --release --example handshakes -- ADDR CA_DIR [THREADS] [SECONDS]
//!
//! The client's certificate and key come from CA_DIR (client.crt, client.key) unless
//! MINITLS_HS_CERT and MINITLS_HS_KEY name other files (an ECDSA P-256 client, for example).
//! The line printed ends with the median wall time of one connect + handshake + close.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minitls::conn::{Channel, ConnError};
use minitls::handshake::{ClientConfig, LocalIdentity, ResumableSession};
use minitls::net::{self, TcpTransport};
use minitls::pki::{CaDir, Role};
use minitls::wire::{AppMessage, Request, RequestKind};

/// One request and its answer (a file that does not exist: an Error, as cheap as nginx's
/// `return 200`), then the client's Close. The answer comes after the server's Finished, so
/// the handshake completed on both sides; and after the session ticket, which is kept.
/// With MINITLS_HS_REQUEST=0: the handshake completed (the server's Finished verified) and
/// the Close, no request (the server's work per connection as in protocol version 2's
/// figures, to compare full handshakes across versions).
fn exchange(chan: &mut Channel<TcpTransport>) -> Result<(), ConnError> {
    if std::env::var_os("MINITLS_HS_REQUEST").is_some_and(|v| v == "0") {
        chan.complete_handshake()?;
        return chan.send_close();
    }
    chan.send_app(&AppMessage::Request(Request {
        kind: RequestKind::Get,
        recursive: false,
        offset: 0,
        prefix_sha256: [0; 32],
        path: "minitls-handshake-probe".into(),
    }))?;
    chan.flush()?;
    match chan.recv_app()? {
        AppMessage::Error(_) => {}
        other => {
            return Err(ConnError::Protocol(format!(
                "expected an Error answer, got {:?}",
                other.typ()
            )));
        }
    }
    chan.send_close()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: handshakes ADDR CA_DIR [THREADS] [SECONDS]");
        std::process::exit(2);
    }
    let addr = args[0].clone();
    let ca = CaDir::new(&args[1]);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let resume = std::env::var_os("MINITLS_HS_RESUME").is_some_and(|v| v == "1");
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let client = match (
        std::env::var_os("MINITLS_HS_CERT"),
        std::env::var_os("MINITLS_HS_KEY"),
    ) {
        (Some(cert), Some(key)) => minitls::pki::load_identity_files(cert.as_ref(), key.as_ref()),
        _ => ca.load_identity(Role::Client),
    };
    let (identity, anchor) = match (client, ca.load_anchor()) {
        (Ok(i), Ok(a)) => (Arc::new(LocalIdentity::new(i)), Arc::new(a)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!(
                "handshakes: cannot load client credentials from {}: {e}",
                args[1]
            );
            std::process::exit(1);
        }
    };

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (identity, anchor) = (identity.clone(), anchor.clone());
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            let addr = addr.clone();
            std::thread::spawn(move || {
                let session: Arc<Mutex<Option<ResumableSession>>> = Arc::new(Mutex::new(None));
                let mut times = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let config = ClientConfig::new(identity.clone(), anchor.clone(), "localhost");
                    let offered = if resume {
                        session.lock().unwrap().take()
                    } else {
                        None
                    };
                    let ok = net::connect_resuming(
                        &addr,
                        config,
                        offered.as_ref(),
                        Duration::from_secs(10),
                    )
                    .map_err(|e| e.to_string())
                    .and_then(|mut chan| {
                        if resume {
                            let slot = session.clone();
                            chan.set_ticket_sink(Box::new(move |s| {
                                *slot.lock().unwrap() = Some(s);
                            }));
                        }
                        exchange(&mut chan).map_err(|e| e.to_string())
                    });
                    match ok {
                        Ok(()) => {
                            times.push(began.elapsed().as_secs_f64() * 1e3);
                            done.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("handshakes: {e}");
                            }
                            0
                        }
                    };
                }
                times
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut times: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "handshakes {n} failed {} seconds {secs:.2} rate {:.1} median_ms {median:.2}",
        failed.load(Ordering::Relaxed),
        n as f64 / secs
    );
    if n == 0 {
        std::process::exit(1);
    }
}
