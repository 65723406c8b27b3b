//! `minitls serve [DIR]`: serve a directory to authenticated clients until killed.
//!
//! Once listening it prints exactly one line `minitls: serving <canonical DIR> on <ip:port>`
//! (scripts and tests wait for it; with `--listen ...:0` it carries the port picked), then one
//! line per connection outcome, and with `-v` every handshake step.

use std::io::{BufRead, IsTerminal};
use std::net::{TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use minitls::audit::AuditEvent;
use minitls::control::{self, Registry};
use minitls::handshake::ServerConfig;
use minitls::net::{self, ServerSettings};
use minitls::paths::ServeRoot;
use minitls::pki::{self, Role};
use minitls::policy::Policy;

use super::args::{CredentialArgs, LogFormat, ServeArgs};
use super::error::{CliError, CliResult, Context, note, out};
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
    let mut root = ServeRoot::new(dir).context(|| format!("open {}", dir.display()))?;
    // Never serve our own secrets: refuse a root that holds them, and hide them anyway should
    // they be moved in later.
    for (secret, what) in secrets(&args.creds) {
        let abs = absolute(&secret);
        if abs.starts_with(root.path()) {
            return Err(CliError::new(format!(
                "refusing to serve {}: it contains {what} {}, which clients could then fetch; \
                 serve a directory that holds only what clients may read (e.g. `minitls serve \
                 ./server_public`), or keep the credentials outside it",
                root.path().display(),
                secret.display()
            )));
        }
        root.hide(&abs);
    }
    if args.listen.to_socket_addrs().is_err() {
        return Err(CliError::new(format!(
            "--listen {}: not an address; use IP:PORT, e.g. 127.0.0.1:4041 (port 0 picks a free one)",
            args.listen
        )));
    }

    let policy = match &args.policy {
        None => None,
        Some(path) => {
            let p = Policy::load(path).map_err(|e| {
                CliError::new(format!(
                    "--policy {}: {e}; fix the file (the README shows the format)",
                    path.display()
                ))
            })?;
            Some(p)
        }
    };

    // 2. Credentials: ours as the server, and the CA our clients must chain to.
    let creds = creds::load(&args.creds, Role::Server, global.quiet)?;
    // A CRL that cannot be used, or is past its nextUpdate, stops the server here (SPEC
    // §2.10): never serve believing revoked clients are kept out when they are not.
    let crl = match &creds.crl {
        None => None,
        Some(source) => Some(Arc::new(
            pki::CrlFile::open(
                &source.path,
                creds.anchors(),
                !source.required,
                pki::now_unix(),
            )
            .map_err(|e| creds::crl_error(&e))?,
        )),
    };
    creds.check_own_chain(Role::Server)?;
    let mut config = ServerConfig::new(creds.identity, creds.anchor);
    config.extra_anchors = creds.extra_anchors;
    if global.verbose {
        config.log = Arc::new(|step: &str| log_line(&format!("handshake: {step}")));
    }

    // 3. Listen, and say where.
    let listener = TcpListener::bind(&args.listen).map_err(|e| bind_error(&args.listen, &e))?;
    let local = listener
        .local_addr()
        .context(|| format!("listen on {}", args.listen))?;
    // SIGTERM, Ctrl-C or the operator's `stop` stops accepting and lets transfers in flight
    // finish (up to net::SHUTDOWN_GRACE); a second signal exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<dyn Fn(&str) + Send + Sync> = if global.quiet || args.log_format == LogFormat::Json
    {
        Arc::new(|_: &str| {})
    } else {
        Arc::new(log_line)
    };
    // The operator's registry: the console, the control socket and --max-session.
    let registry = Arc::new(Registry::new(
        stop.clone(),
        Some(args.max_session),
        log.clone(),
    ));
    let control_socket = match &args.control {
        Some(path) => {
            let socket = control::listen(path, registry.clone())
                .map_err(|e| CliError::new(format!("--control: {e}")))?;
            note(&format!(
                "control socket {} (mode 0600): minitls admin clients --control {}",
                path.display(),
                path.display()
            ));
            Some(socket)
        }
        None => None,
    };
    if let Some(p) = &policy_note(args) {
        note(p);
    }
    if let Some(crl) = &crl
        && let (Some(list), _) = crl.current(pki::now_unix())
    {
        note(&format!(
            "revocation list {} ({} revoked certificate(s)); re-read when it changes",
            crl.path().display(),
            list.len()
        ));
    }
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
        policy: policy.map(|p| std::sync::RwLock::new(Arc::new(p))),
        audit: audit_sink(args.log_format, global.quiet),
        max_upload: args.max_upload_size,
        crl,
        registry: Some(registry.clone()),
    });
    reload_on_sighup(settings.clone(), args.policy.clone())?;
    net::stop_on_signals(&stop).context(|| "install the SIGTERM/SIGINT handlers".to_string())?;
    if std::io::stdin().is_terminal() {
        console(registry);
    }
    let served = net::serve(listener, settings, stop, log).context(|| format!("serve on {local}"));
    // The socket file goes with the server.
    drop(control_socket);
    served
}

/// The server's console: operator commands read from its terminal, answers on stdout (the
/// log stays on stderr). Ctrl-D ends the console, not the server. Started in the background
/// (`minitls serve &`), it waits until `fg` brings the server to the foreground: reading the
/// terminal from the background would stop the server (SIGTTIN).
fn console(registry: Arc<Registry>) {
    if control::stdin_is_foreground_terminal() {
        note("console: type `help` for the commands (clients, drop ID, say ID TEXT, stop)");
    }
    let spawned = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            loop {
                if !control::stdin_is_foreground_terminal() {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    continue;
                }
                let mut line = String::new();
                match stdin.lock().read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                match registry.command(line.trim_end_matches(['\n', '\r'])) {
                    Ok(lines) => {
                        for l in lines {
                            // A closed stdout ends nothing but this answer.
                            let _ = out(&l);
                        }
                    }
                    Err(e) => note(&format!("error: {e}")),
                }
            }
        });
    if let Err(e) = spawned {
        note(&format!("warning: no console: {e}"));
    }
}

/// What `serve` must never serve: the private key it loads, or with `--ca-dir` the whole CA
/// directory (the CA key and every leaf key in it).
fn secrets(creds: &CredentialArgs) -> Vec<(PathBuf, &'static str)> {
    match &creds.key {
        Some(key) => vec![(key.clone(), "the server's private key (--key)")],
        None => vec![(
            creds.ca_dir.clone(),
            "the CA directory with its private keys (--ca-dir)",
        )],
    }
}

/// `path` made absolute with symbolic links resolved, also when it does not exist yet (then
/// its nearest existing ancestor is resolved and the rest appended).
fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            out.extend(rest.iter().rev());
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// SIGHUP re-reads the CRL (which is also re-read whenever its file changes) and the policy
/// file; connections authenticated from then on get the new rules
/// (a connection keeps the rights it was given at its handshake). A file that no longer parses
/// is reported and the old policy stays in force. Without --policy, SIGHUP is noted and
/// otherwise ignored (its default action would end the server).
fn reload_on_sighup(settings: Arc<ServerSettings>, path: Option<PathBuf>) -> CliResult<()> {
    use signal_hook::consts::SIGHUP;
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP])
        .context(|| "install the SIGHUP handler".to_string())?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                if let Some(crl) = &settings.crl {
                    for line in crl.reload(pki::now_unix()) {
                        log_line(&format!("SIGHUP: {line}"));
                    }
                }
                let (Some(slot), Some(path)) = (&settings.policy, &path) else {
                    if settings.crl.is_some() {
                        continue;
                    }
                    log_line("SIGHUP: no --policy to reload");
                    continue;
                };
                match Policy::load(path) {
                    Ok(p) => {
                        let grants = p.grants();
                        match slot.write() {
                            Ok(mut g) => *g = Arc::new(p),
                            Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
                        }
                        log_line(&format!(
                            "SIGHUP: reloaded the policy from {} ({grants} grants)",
                            path.display()
                        ));
                    }
                    Err(e) => log_line(&format!(
                        "SIGHUP: kept the previous policy; {}: {e}",
                        path.display()
                    )),
                }
            }
        })
        .context(|| "start the SIGHUP thread".to_string())?;
    Ok(())
}

fn policy_note(args: &ServeArgs) -> Option<String> {
    args.policy
        .as_ref()
        .map(|p| format!("access policy from {} (deny by default)", p.display()))
}

/// Where audit events go: stderr, one line each. Under --quiet only failed handshakes are
/// written (SPEC §1.3: they are logged whatever the verbosity).
fn audit_sink(format: LogFormat, quiet: bool) -> Arc<dyn Fn(&AuditEvent) + Send + Sync> {
    Arc::new(move |e: &AuditEvent| {
        if quiet && e.op != "handshake" {
            return;
        }
        let line = match format {
            LogFormat::Text => format!("minitls: {}", e.text()),
            LogFormat::Json => e.json(),
        };
        // One write per line, so lines of concurrent connections never interleave.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr().lock(),
            format!("{line}\n").as_bytes(),
        );
    })
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
