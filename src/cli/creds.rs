//! Loading our identity and the CA certificate for `serve`, `fetch` and `ls`.
//!
//! Explicit files (`--cert --key --ca-cert`) are only ever read: a missing one is an error that
//! names it. Otherwise everything comes from `--ca-dir`, which is completed first (SPEC §1:
//! missing credentials are regenerated, and we say so).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minitls::handshake::LocalIdentity;
use minitls::pki::{self, CaDir, Crl, MissingReason, PkiError, Role, TrustAnchor};

use super::args::CredentialArgs;
use super::error::{CliError, CliResult, Context, exit, note};
use super::progress::Spinner;

/// Days before its notAfter from which `serve` and `fetch` warn about their own certificate.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Our identity and the CA we trust, ready for a handshake.
#[derive(Clone)]
pub struct Credentials {
    pub identity: Arc<LocalIdentity>,
    pub anchor: Arc<TrustAnchor>,
    /// The other anchors of a `--ca-cert` bundle.
    pub extra_anchors: Arc<Vec<TrustAnchor>>,
    /// The revocation list to honour: `--crl`, else `crl.pem` of `--ca-dir`.
    pub crl: Option<CrlSource>,
}

/// Where the revocation list comes from.
#[derive(Clone)]
pub struct CrlSource {
    pub path: PathBuf,
    /// Named with `--crl` (must exist), rather than `crl.pem` of the CA directory (which
    /// appears with the first `ca revoke`; a server watches for it).
    pub required: bool,
}

impl Credentials {
    /// Every trust anchor: the first of `--ca-cert` (or `ca.crt`) and the rest of a bundle.
    pub fn anchors(&self) -> Vec<TrustAnchor> {
        let mut all = vec![(*self.anchor).clone()];
        all.extend(self.extra_anchors.iter().cloned());
        all
    }

    /// The CRL for a client: one that fails its signature check (or is not a CRL) is an
    /// error; one past its nextUpdate is used with a warning (it still revokes what it lists).
    pub fn client_crl(&self) -> CliResult<Option<Arc<Crl>>> {
        let Some(source) = &self.crl else {
            return Ok(None);
        };
        let path = &source.path;
        if !source.required && !path.exists() {
            return Ok(None);
        }
        let anchors = self.anchors();
        let crl = pki::load_crl_file_any(path, &anchors.iter().collect::<Vec<_>>())
            .map_err(|e| crl_error(&e))?;
        if let Err(e) = crl.check_current(pki::now_unix()) {
            note(&format!(
                "warning: {}: {e}; its revocations are still honoured (make a fresh one with \
                 `minitls ca revoke` on the CA machine)",
                path.display()
            ));
        }
        for line in unanchored_warnings(&crl, path, &self.identity.chain) {
            note(&line);
        }
        Ok(Some(Arc::new(crl)))
    }
}

/// One warning per list of the CRL file `path` whose issuer is neither a trust anchor nor an
/// intermediate of `own_chain`: such a list counts only if a peer's chain holds a CA of that
/// name (and then only if that CA's key signed it), so it is said rather than silently kept.
pub fn unanchored_warnings(crl: &Crl, path: &Path, own_chain: &[Vec<u8>]) -> Vec<String> {
    crl.unanchored_issuers(own_chain)
        .into_iter()
        .map(|issuer| {
            format!(
                "warning: {}: the list of \"{}\" is from no CA we know (not a trust anchor, not in \
                 our own chain); it counts only for a peer whose chain holds that CA, and only if \
                 that CA's key signed it (for another CA's list, pass the right one with --crl)",
                path.display(),
                super::error::printable(&issuer)
            )
        })
        .collect()
}

/// Where credentials come from, which decides the fix a PKI error calls for: the library says
/// what failed and names no command or flag; this layer adds them (as rage's `error.rs` does).
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// A CA directory (`--ca-dir`, `ca ... --dir`), for a role's credentials if one is given.
    CaDir { dir: &'a Path, role: Option<Role> },
    /// Files named with `--cert --key --ca-cert`.
    Files,
}

/// `"{e}; {fix}"`, or just the error when no fix applies.
pub fn with_fix(e: &PkiError, origin: Origin<'_>) -> String {
    match fix_for(e.innermost(), origin) {
        Some(fix) => format!("{e}; {fix}"),
        None => e.to_string(),
    }
}

fn fix_for(e: &PkiError, origin: Origin<'_>) -> Option<String> {
    let role_name = |role: Option<Role>| role.map_or("client".to_string(), |r| r.to_string());
    Some(match e {
        PkiError::Read { path, source } => match source.kind() {
            std::io::ErrorKind::NotFound => match origin {
                Origin::CaDir { dir, role } => {
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if name.starts_with("ca.") {
                        format!(
                            "run `minitls ca init --dir {}` or pass --ca-dir",
                            dir.display()
                        )
                    } else {
                        format!(
                            "run `minitls ca issue --role {} NAME --dir {}` or pass --ca-dir",
                            role_name(role),
                            dir.display()
                        )
                    }
                }
                Origin::Files => "check the --cert, --key and --ca-cert paths".to_string(),
            },
            // Never "issue a new one": the file is there, it is the permissions that are wrong.
            std::io::ErrorKind::PermissionDenied => {
                "the user running minitls must be able to read it (check its mode and owner, and \
                 its directory's)"
                    .to_string()
            }
            _ => return None,
        },
        PkiError::AlreadyExists { action, .. } => format!("pass --force to {action}"),
        PkiError::Missing { why, .. } => {
            let dir = match origin {
                Origin::CaDir { dir, .. } => dir.display().to_string(),
                Origin::Files => "DIR".to_string(),
            };
            let role = match origin {
                Origin::CaDir { role, .. } => role_name(role),
                Origin::Files => "client".to_string(),
            };
            match why {
                MissingReason::CaAbsentBeside { .. } => format!(
                    "copy the CA certificate there, or run `minitls ca init --dir {dir} --force`                      to replace all credentials"
                ),
                MissingReason::NoCaKey { .. } => {
                    format!("copy {role}.crt and {role}.key from the machine that holds the CA key")
                }
                MissingReason::NoCaCertificate => format!(
                    "restore it, or run `minitls ca init --dir {dir} --force` to make a new CA"
                ),
                MissingReason::HalfPair { .. } => format!(
                    "restore it, or re-issue both with `minitls ca issue --role {role} NAME                      --dir {dir} --force`"
                ),
            }
        }
        PkiError::KeyMismatch => "use the key written together with the certificate, or \
                                  re-issue both with `minitls ca issue --force`"
            .to_string(),
        PkiError::Validity(_) => "choose another --days".to_string(),
        _ => return None,
    })
}

/// The one-line message for a CRL that cannot be used, with the fix.
pub fn crl_error(e: &pki::PkiError) -> CliError {
    CliError::new(format!(
        "cannot use the CRL {e}; pass the CRL of the configured CA with --crl, re-sign it with \
         `minitls ca revoke` on the CA machine, or remove it"
    ))
}

/// Loads the credentials for `role`, creating missing ones in `--ca-dir` (never explicit files).
pub fn load(args: &CredentialArgs, role: Role, quiet: bool) -> CliResult<Credentials> {
    let (identity, anchor, extra_anchors, cert_path, default_crl) = match (
        &args.cert,
        &args.key,
        &args.ca_cert,
    ) {
        (Some(cert), Some(key), Some(ca_cert)) => {
            for (flag, path) in [("--cert", cert), ("--key", key), ("--ca-cert", ca_cert)] {
                require_file(flag, path)?;
            }
            let fail = |what: &str, e: PkiError| {
                CliError::new(format!("{what}: {}", with_fix(&e, Origin::Files)))
            };
            let identity = pki::load_identity_files(cert, key)
                .map_err(|e| fail(&format!("load the {role} credentials (--cert/--key)"), e))?;
            let mut anchors = pki::load_anchor_bundle_file(ca_cert)
                .map_err(|e| fail("load the CA certificates (--ca-cert)", e))?;
            let anchor = anchors.remove(0);
            (identity, anchor, anchors, cert.clone(), None)
        }
        (None, None, None) => {
            let ca = CaDir::new(&args.ca_dir);
            let spinner = (!ca.ca_cert_path().exists() || !ca.cert_path(role).exists())
                .then(|| Spinner::new(quiet, "creating credentials (RSA key generation)"));
            let origin = Origin::CaDir {
                dir: &args.ca_dir,
                role: Some(role),
            };
            let fail = |what: &str, e: PkiError| {
                CliError::new(format!("{what}: {}", with_fix(&e, origin)))
            };
            let made = ca.ensure(role).map_err(|e| {
                fail(
                    &format!("prepare {role} credentials in {}", args.ca_dir.display()),
                    e,
                )
            })?;
            drop(spinner);
            if let Some(made) = made {
                note(&made);
            }
            let identity = ca
                .load_identity(role)
                .map_err(|e| fail(&format!("load the {role} credentials"), e))?;
            let anchor = ca
                .load_anchor()
                .map_err(|e| fail("load the CA certificate", e))?;
            let crl = CrlSource {
                path: ca.crl_path(),
                required: false,
            };
            (identity, anchor, Vec::new(), ca.cert_path(role), Some(crl))
        }
        // clap's `requires_all` rejects partial sets before we get here.
        _ => {
            return Err(CliError::new(
                "--cert, --key and --ca-cert go together: give all three, or none to use --ca-dir",
            ));
        }
    };
    check_own_expiry(&identity.cert_der, &cert_path, role, args)?;
    let crl = match &args.crl {
        Some(path) => {
            require_file("--crl", path)?;
            Some(CrlSource {
                path: path.clone(),
                required: true,
            })
        }
        None => default_crl,
    };
    Ok(Credentials {
        identity: Arc::new(LocalIdentity::new(identity)),
        anchor: Arc::new(anchor),
        extra_anchors: Arc::new(extra_anchors),
        crl,
    })
}

/// Our own certificate: an expired one is refused before any handshake (the peer would only
/// refuse it), one that expires within [`EXPIRY_WARNING_DAYS`] is a warning.
fn check_own_expiry(der: &[u8], path: &Path, role: Role, args: &CredentialArgs) -> CliResult<()> {
    let summary = pki::summarize_certificate_der(der)
        .context(|| format!("read our {role} certificate {}", path.display()))?;
    let now = pki::now_unix();
    let reissue = match &args.cert {
        Some(_) => format!("ask the CA's operator for a new {role} certificate"),
        None => format!(
            "issue a new one with `minitls ca issue --role {role} {} --dir {} --force`",
            summary.common_name,
            args.ca_dir.display()
        ),
    };
    if summary.not_after_unix < now {
        return Err(CliError::with_code(
            exit::AUTH,
            format!(
                "our {role} certificate {} expired on {}; {reissue}",
                path.display(),
                pki::format_unix_utc(summary.not_after_unix)
            ),
        ));
    }
    let days_left = (summary.not_after_unix - now).div_euclid(86_400);
    if days_left < EXPIRY_WARNING_DAYS {
        note(&format!(
            "warning: our {role} certificate {} expires in {days_left} day(s), on {}; {reissue}",
            path.display(),
            pki::format_unix_utc(summary.not_after_unix)
        ));
    }
    Ok(())
}

/// An explicitly named credential file must exist; it is never created for the user.
fn require_file(flag: &str, path: &Path) -> CliResult<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(CliError::new(format!(
            "{flag} {}: not a file; name the PEM file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::new(format!(
            "{flag} {}: no such file (explicitly named credentials are never created; \
             check the path, or drop --cert/--key/--ca-cert to use --ca-dir)",
            path.display()
        ))),
        Err(e) => Err(CliError::new(format!("{flag} {}: {e}", path.display()))),
    }
}

impl Credentials {
    /// Checks that our own certificate and chain verify against our anchors for `role`, so that
    /// a broken chain is found at start and not by every peer (`serve`).
    pub fn check_own_chain(&self, role: Role) -> CliResult<()> {
        let mut anchors: Vec<&TrustAnchor> = vec![&self.anchor];
        anchors.extend(self.extra_anchors.iter());
        pki::verify_chain(
            &anchors,
            &self.identity.cert_der,
            &self.identity.chain,
            role,
            None,
            pki::now_unix(),
        )
        .map(drop)
        .map_err(|e| {
            CliError::with_code(
                exit::AUTH,
                format!(
                    "our {role} certificate does not verify against our own CA certificates: \
                     {e}; give the whole chain (ours first, then each intermediate) with --cert \
                     and the root CA with --ca-cert"
                ),
            )
        })
    }
}
