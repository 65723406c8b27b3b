//! The command-line front end: argument structs, one module per subcommand, and the helpers
//! they share (connecting with helpful errors, time formatting). Only the library's public API
//! is used, so everything here could be rewritten without touching the protocol.

pub mod admin;
pub mod args;
pub mod ca;
pub mod completions;
pub mod config;
pub mod creds;
pub mod error;
pub mod fetch;
pub mod ls;
pub mod progress;
pub mod push;
pub mod serve;
pub mod shell;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use minitls::conn::{Channel, ConnError};
use minitls::handshake::{ClientConfig, HandshakeError};
use minitls::net::{self, TcpTransport};
use minitls::pki::{self, CertError, Role};
use minitls::session_cache::SessionCache;
use minitls::transfer::{self, TransferError};
use minitls::wire::{Alert, ErrorCode};

use args::{Cli, Command, ServerArgs};
use creds::Credentials;
use error::{CliError, CliResult, exit, note};

/// Time allowed for connecting and completing the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Options every subcommand sees.
#[derive(Clone, Copy, Debug)]
pub struct Global {
    pub verbose: bool,
    pub quiet: bool,
}

/// Runs the parsed command line; `matches` says which values were given (flags, environment)
/// and which are defaults, which the config file may fill.
pub fn run(mut cli: Cli, matches: &clap::ArgMatches) -> CliResult<()> {
    let global = Global {
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    config::apply(
        &mut cli.command,
        matches,
        cli.config.as_deref(),
        cli.no_config,
        global,
    )?;
    match cli.command {
        Command::Ca(cmd) => ca::run(cmd, global),
        Command::Serve(a) => serve::run(&a, global),
        Command::Fetch(a) => fetch::run(&a, global),
        Command::Push(a) => push::run(&a, global),
        Command::Ls(a) => ls::run(&a, global),
        Command::Shell(a) => shell::run(&a, global),
        Command::Admin(cmd) => admin::run(&cmd),
        Command::Verify(a) => verify::run(&a, global),
        Command::Completions(a) => completions::completions(&a),
        Command::Man(a) => completions::man(&a),
    }
}

/// Connects to the server and runs the handshake as a client; with `-v` each step is printed.
fn connect(
    server: &ServerArgs,
    creds: Credentials,
    global: Global,
) -> CliResult<Channel<TcpTransport>> {
    let crl = creds.client_crl()?;
    let name = server.expected_name();
    let fingerprint = creds.identity.fingerprint();
    let mut config = ClientConfig::new(creds.identity, creds.anchor, &name);
    config.extra_anchors = creds.extra_anchors;
    config.crl = crl;
    if global.verbose {
        config.log = Arc::new(|step: &str| note(&format!("handshake: {step}")));
    }
    // A ticket from an earlier connection to this server, by this identity, is used once:
    // one round trip and no RSA; the session brings the next ticket.
    let cache = server.session_cache();
    let key = SessionCache::key(&server.server, &name, &fingerprint);
    let session = cache.as_ref().and_then(|c| c.take(&key, pki::now_unix()));
    let mut chan = net::connect_resuming(&server.server, config, session.as_ref(), CONNECT_TIMEOUT)
        .map_err(|e| {
            CliError::with_code(
                connect_status(&e),
                format!("connect to {}: {e}{}", server.server, conn_hint(&e, server)),
            )
        })?;
    if let Some(cache) = cache {
        let verbose = global.verbose;
        chan.set_ticket_sink(Box::new(move |s| {
            if let Err(e) = cache.store(&key, s, pki::now_unix())
                && verbose
            {
                note(&format!(
                    "session cache {}: {e} (the next connection makes a full handshake)",
                    cache.path().display()
                ));
            }
        }));
    }
    Ok(chan)
}

/// SPEC §1.1 for a failure to connect: the server could not be reached (3), or it was reached
/// and the handshake failed (4).
fn connect_status(e: &ConnError) -> u8 {
    match e {
        ConnError::Io(_) | ConnError::Timeout => exit::UNREACHABLE,
        // At its --max-clients limit: reachable later, not an authentication failure.
        ConnError::Handshake(HandshakeError::PeerAlert(Alert::Busy)) => exit::UNREACHABLE,
        _ => exit::AUTH,
    }
}

/// SPEC §1.1 for a failed request.
fn transfer_status(e: &TransferError) -> u8 {
    match e {
        // The server found an upload's data or signature not to match (push).
        TransferError::Remote {
            code: ErrorCode::IntegrityFailed,
            ..
        } => exit::INTEGRITY,
        TransferError::Remote { .. } => exit::REFUSED,
        TransferError::Io { .. } | TransferError::Refused(_) => exit::LOCAL_IO,
        TransferError::Integrity(_) | TransferError::UnsafeName { .. } => exit::INTEGRITY,
        TransferError::BadRequestPath { .. } => exit::USAGE,
        // The server's last handshake flight is checked at the first answer (the request
        // went with our Finished), so a refused handshake can surface here.
        TransferError::Conn(c @ ConnError::Handshake(_)) => connect_status(c),
        // Altered or cut records: SPEC §1.1 counts truncated data as an integrity failure.
        TransferError::Conn(ConnError::Record(_) | ConnError::Truncated) => exit::INTEGRITY,
        // The operator dropped us, or the session reached the server's --max-session: the
        // server is there, we are no longer served (as with Busy).
        TransferError::Ended(_) | TransferError::Closed => exit::UNREACHABLE,
        TransferError::Conn(_) | TransferError::Protocol(_) => exit::OTHER,
    }
}

/// An error of a request on an established channel, with context and a hint. When the
/// server refused the request the session is still sound, so it is closed politely (the
/// server then logs the refusal, not a cut connection).
fn transfer_error(
    what: String,
    e: TransferError,
    chan: &mut Channel<TcpTransport>,
    server: &ServerArgs,
) -> CliError {
    if let TransferError::Remote { .. } = &e {
        let _ = transfer::close(chan);
    }
    describe_transfer_error(what, e, server)
}

/// The one line and exit status for a failed request (see [`transfer_error`]).
fn describe_transfer_error(what: String, e: TransferError, server: &ServerArgs) -> CliError {
    let hint = match &e {
        // After a completed handshake a cut is not a question of "is it a minitls server".
        TransferError::Conn(ConnError::Truncated) => format!(
            "; the server at {} hung up mid-transfer (stopped or killed?); its log says why",
            server.server
        ),
        TransferError::Conn(c) => conn_hint(c, server),
        TransferError::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge
            ) =>
        {
            "; the disk is full (or a file size limit was reached): free some space and fetch \
             again; the incomplete file was removed"
                .to_string()
        }
        _ => String::new(),
    };
    CliError::with_code(transfer_status(&e), format!("{what}: {e}{hint}"))
}

/// The likely fix for a connection or handshake failure, as "; ..." to append.
fn conn_hint(e: &ConnError, server: &ServerArgs) -> String {
    let addr = &server.server;
    let hint = match e {
        ConnError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("is `minitls serve` running at {addr}? (--server)")
            }
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                format!("the server at {addr} dropped the connection; its log says why")
            }
            std::io::ErrorKind::InvalidInput => {
                "give the server as HOST:PORT, e.g. 127.0.0.1:4041 (--server)".to_string()
            }
            _ => return String::new(),
        },
        ConnError::Timeout => {
            format!("is {addr} a minitls server, and reachable? (--server)")
        }
        ConnError::Truncated => {
            format!("is {addr} a minitls server? If so, its log says why it hung up")
        }
        ConnError::Handshake(h) => match h {
            HandshakeError::PeerAlert(Alert::CertificateExpired) => {
                "the server rejected our client certificate: it has expired (or is not valid \
                 yet); get a new one (`minitls ca issue --role client NAME --force` on \
                 the CA machine) and check the clocks"
                    .to_string()
            }
            HandshakeError::PeerAlert(Alert::CertificateRevoked) => {
                "the server rejected our client certificate: it is revoked; ask the CA's \
                 operator for a new one"
                    .to_string()
            }
            HandshakeError::PeerAlert(Alert::CertificateWrongRole) => {
                "the server rejected our client certificate: it is not for client use \
                 (extended key usage clientAuth); use one made with `minitls ca issue --role \
                 client` (--ca-dir / --cert)"
                    .to_string()
            }
            HandshakeError::PeerAlert(Alert::UnknownCa) => {
                "the server rejected our client certificate: another CA issued it; use \
                 credentials from the server's CA (--ca-dir / --cert)"
                    .to_string()
            }
            HandshakeError::PeerCertificate {
                role: Role::Server,
                source: CertError::NameMismatch { .. },
            } => "use --server-name with one of its names, or re-issue the server certificate \
                  with the name clients use"
                .to_string(),
            HandshakeError::PeerCertificate {
                role: Role::Server,
                source: CertError::NoSubjectAltNames,
            } => "re-issue the server certificate with its names in subjectAltName \
                  (`minitls ca issue --role server NAME --san DNS:NAME`)"
                .to_string(),
            HandshakeError::PeerCertificate {
                role: Role::Server,
                source: CertError::Revoked { .. },
            } => "the server's certificate is on the CA's revocation list (--crl / ca/crl.pem); \
                  the server needs a new certificate"
                .to_string(),
            HandshakeError::PeerCertificate {
                role: Role::Server,
                source:
                    CertError::CrlSignatureInvalid { .. } | CertError::IssuerCannotSignCrl { .. },
            } => "replace that list in the CRL file (--crl / ca/crl.pem) with the one the \
                  intermediate CA signed, or remove it"
                .to_string(),
            HandshakeError::PeerAlert(Alert::BadCertificate) => {
                "the server rejected our client certificate (its log says why): is it a client \
                 certificate issued by the server's CA? (--ca-dir / --cert)"
                    .to_string()
            }
            HandshakeError::PeerAlert(Alert::HandshakeFailure) => {
                "the server could not verify our handshake: do --cert and --key belong together, \
                 and come from the server's CA? (--ca-dir / --cert / --key)"
                    .to_string()
            }
            HandshakeError::PeerAlert(Alert::Busy) => {
                "the server is at its --max-clients limit; try again shortly".to_string()
            }
            HandshakeError::PeerAlert(Alert::UnsupportedVersion)
            | HandshakeError::UnsupportedVersion(_) => {
                "use the same minitls version on both ends".to_string()
            }
            HandshakeError::PeerCertificate {
                role: Role::Server,
                source: CertError::WrongIssuer { .. } | CertError::NotSignedByCa,
            } => "is --ca-dir / --ca-cert the CA that issued the server's certificate?".to_string(),
            _ => return String::new(),
        },
        _ => return String::new(),
    };
    format!("; {hint}")
}

/// Formats Unix seconds as ISO-8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso_utc(secs: i64) -> String {
    minitls::pki::format_unix_iso(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_utc_formats_known_instants() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn iso_utc_does_not_panic_on_extreme_values() {
        let _ = iso_utc(i64::MAX);
        let _ = iso_utc(i64::MIN);
    }
}
