//! `minitls serve [DIR]`: serve a directory to authenticated clients until killed.
//!
//! Once listening it prints exactly one line `minitls: serving <canonical DIR> on <ip:port>`
//! (scripts and tests wait for it; with `--listen ...:0` it carries the port picked), then one
//! line per connection outcome, and with `-v` every handshake step.

use std::net::{TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use minitls::handshake::ServerConfig;
use minitls::net::{self, ServerSettings};
use minitls::paths::ServeRoot;
use minitls::pki::{self, Role};

use super::args::ServeArgs;
use super::error::{CliError, CliResult, Context, note};
use super::{Global, creds, iso_utc};

pub fn run(args: &ServeArgs, global: Global) -> CliResult<()> {
    // 1. Validate the arguments before creating credentials or opening a socket.
    let dir = &args.dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(CliError::new(format!(
                "{} is not a directory; name the directory to serve",
                dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::new(format!(
                "the directory to serve, {}, does not exist; create it (mkdir -p {}) or name \
                 another one",
                dir.display(),
                dir.display()
            )));
        }
        Err(e) => return Err(CliError::new(format!("{}: {e}", dir.display()))),
    }
    let root = ServeRoot::new(dir).context(|| format!("open {}", dir.display()))?;
    if args.listen.to_socket_addrs().is_err() {
        return Err(CliError::new(format!(
            "--listen {}: not an address; use IP:PORT, e.g. 127.0.0.1:4041 (port 0 picks a free one)",
            args.listen
        )));
    }

    // 2. Credentials: ours as the server, and the CA our clients must chain to.
    let creds = creds::load(&args.creds, Role::Server, global.quiet)?;
    let mut config = ServerConfig::new(creds.identity, creds.anchor);
    if global.verbose {
        config.log = Arc::new(|step: &str| log_line(&format!("handshake: {step}")));
    }

    // 3. Listen, and say where.
    let listener = TcpListener::bind(&args.listen).map_err(|e| bind_error(&args.listen, &e))?;
    let local = listener
        .local_addr()
        .context(|| format!("listen on {}", args.listen))?;
    note(&format!("serving {} on {local}", root.path().display()));
    if global.verbose {
        note(&format!(
            "server certificate sha256 {}; clients must hold a certificate from CA '{}'",
            pki::fingerprint_hex(&config.identity.fingerprint()),
            config.anchor.subject()
        ));
    }

    let settings = Arc::new(ServerSettings {
        root,
        config,
        max_clients: args.max_clients,
        max_handshakes: args.max_handshakes,
        max_handshakes_per_source: args.max_handshakes_per_source,
        first_flight_timeout: Duration::from_secs(args.first_flight_timeout),
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
    });
    // SIGTERM or Ctrl-C stops accepting and lets transfers in flight finish (up to
    // net::SHUTDOWN_GRACE); a second signal exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    net::stop_on_signals(&stop).context(|| "install the SIGTERM/SIGINT handlers".to_string())?;
    let log: Arc<dyn Fn(&str) + Send + Sync> = if global.quiet {
        Arc::new(|_: &str| {})
    } else {
        Arc::new(log_line)
    };
    net::serve(listener, settings, stop, log).context(|| format!("serve on {local}"))
}

/// One server log line, with the time: `minitls: 2025-01-01T12:00:00Z <text>`.
fn log_line(text: &str) {
    note(&format!("{} {text}", iso_utc(pki::now_unix())));
}

fn bind_error(addr: &str, e: &std::io::Error) -> CliError {
    let fix = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; is another server running there? Pick another port with --listen"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need privileges: use a higher port with --listen"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; that address is not on this machine: use one of its addresses, or 0.0.0.0, with --listen"
        }
        _ => "",
    };
    CliError::new(format!("cannot listen on {addr}: {e}{fix}"))
}
