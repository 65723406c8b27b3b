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
use minitls::handshake::{self, ServerConfig};
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
    // The ticket key lives in memory only: a restart sends returning clients through a full
    // handshake (SPEC §2.12). It outlives certificate reloads (SIGHUP), but a ticket names
    // the certificate it was issued under and is refused under another one.
    let tickets = Arc::new(handshake::TicketKeys::new(
        handshake::DEFAULT_TICKET_LIFETIME,
    ));
    let config = server_config(creds, global.verbose, tickets.clone());

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
        for line in creds::unanchored_warnings(&list, crl.path(), &config.identity.chain) {
            note(&line);
        }
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
        config: std::sync::RwLock::new(config),
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
    reload_on_sighup(
        settings.clone(),
        args.creds.clone(),
        args.policy.clone(),
        global.verbose,
    )?;
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

fn server_config(
    creds: creds::Credentials,
    verbose: bool,
    tickets: Arc<handshake::TicketKeys>,
) -> ServerConfig {
    let mut config = ServerConfig::new(creds.identity, creds.anchor);
    config.extra_anchors = creds.extra_anchors;
    config.tickets = Some(tickets);
    if verbose {
        config.log = Arc::new(|step: &str| log_line(&format!("handshake: {step}")));
    }
    config
}

/// SIGHUP re-reads our certificate and key (a renewed server certificate goes into use without
/// a restart), the CRL (which is also re-read whenever its file changes) and the policy file;
/// connections authenticated from then on get the new ones (a connection keeps the
/// certificate and rights of its handshake). Whatever no longer loads or verifies is reported
/// and the previous one stays in force. The trust anchors are read again only to check they
/// did not change: the CRL is bound to them, so a new CA needs a restart.
fn reload_on_sighup(
    settings: Arc<ServerSettings>,
    creds: CredentialArgs,
    policy: Option<PathBuf>,
    verbose: bool,
) -> CliResult<()> {
    use signal_hook::consts::SIGHUP;
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP])
        .context(|| "install the SIGHUP handler".to_string())?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                log_line(&format!(
                    "SIGHUP: {}",
                    reload_certificate(&settings, &creds, verbose)
                ));
                if let Some(crl) = &settings.crl {
                    for line in crl.reload(pki::now_unix()) {
                        log_line(&format!("SIGHUP: {line}"));
                    }
                }
                if let (Some(slot), Some(path)) = (&settings.policy, &policy) {
                    log_line(&format!("SIGHUP: {}", reload_policy(slot, path)));
                }
            }
        })
        .context(|| "start the SIGHUP thread".to_string())?;
    Ok(())
}

/// Loads our credentials again for [`reload_on_sighup`]; says what happened. Never creates
/// credentials (a missing file keeps the old ones).
fn reload_certificate(settings: &ServerSettings, args: &CredentialArgs, verbose: bool) -> String {
    let keep = |why: String| format!("kept the previous server certificate: {why}");
    let files = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => [cert.clone(), key.clone()],
        _ => {
            let ca = pki::CaDir::new(&args.ca_dir);
            [ca.cert_path(Role::Server), ca.key_path(Role::Server)]
        }
    };
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        return keep(format!("{} is missing", missing.display()));
    }
    let creds = match creds::load(args, Role::Server, true) {
        Ok(c) => c,
        Err(e) => return keep(e.to_string()),
    };
    if let Err(e) = creds.check_own_chain(Role::Server) {
        return keep(e.to_string());
    }
    let current = settings.config();
    let same_anchors = creds.anchor.der() == current.anchor.der()
        && creds.extra_anchors.len() == current.extra_anchors.len()
        && creds
            .extra_anchors
            .iter()
            .zip(current.extra_anchors.iter())
            .all(|(a, b)| a.der() == b.der());
    if !same_anchors {
        return keep(
            "the CA certificate changed, which needs a restart (the CRL and the clients' \
             certificates are checked against the CA loaded at start)"
                .into(),
        );
    }
    let tickets = current.tickets.clone().unwrap_or_else(|| {
        Arc::new(handshake::TicketKeys::new(
            handshake::DEFAULT_TICKET_LIFETIME,
        ))
    });
    let config = server_config(creds, verbose, tickets);
    let fingerprint = pki::fingerprint_hex(&config.identity.fingerprint());
    let unchanged = config.identity.cert_der == current.identity.cert_der;
    settings.replace_config(config);
    if unchanged {
        format!("server certificate unchanged (sha256 {fingerprint})")
    } else {
        format!("reloaded the server certificate (sha256 {fingerprint})")
    }
}

fn reload_policy(slot: &std::sync::RwLock<Arc<Policy>>, path: &std::path::Path) -> String {
    match Policy::load(path) {
        Ok(p) => {
            let grants = p.grants();
            match slot.write() {
                Ok(mut g) => *g = Arc::new(p),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
            }
            format!(
                "reloaded the policy from {} ({grants} grants)",
                path.display()
            )
        }
        Err(e) => format!("kept the previous policy; {}: {e}", path.display()),
    }
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
