//! Loading our identity and the CA certificate for `serve`, `fetch` and `ls`.
//!
//! Explicit files (`--cert --key --ca-cert`) are only ever read: a missing one is an error that
//! names it. Otherwise everything comes from `--ca-dir`, which is completed first (SPEC §1:
//! missing credentials are regenerated, and we say so).

use std::path::Path;
use std::sync::Arc;

use minitls::handshake::LocalIdentity;
use minitls::pki::{self, CaDir, Role, TrustAnchor};

use super::args::CredentialArgs;
use super::error::{CliError, CliResult, Context, note};
use super::progress::Spinner;

/// Our identity and the CA we trust, ready for a handshake.
pub struct Credentials {
    pub identity: Arc<LocalIdentity>,
    pub anchor: Arc<TrustAnchor>,
}

/// Loads the credentials for `role`, creating missing ones in `--ca-dir` (never explicit files).
pub fn load(args: &CredentialArgs, role: Role, quiet: bool) -> CliResult<Credentials> {
    let (identity, anchor) = match (&args.cert, &args.key, &args.ca_cert) {
        (Some(cert), Some(key), Some(ca_cert)) => {
            for (flag, path) in [("--cert", cert), ("--key", key), ("--ca-cert", ca_cert)] {
                require_file(flag, path)?;
            }
            let identity = pki::load_identity_files(cert, key)
                .context(|| format!("load the {role} credentials (--cert/--key)"))?;
            let anchor = pki::load_anchor_file(ca_cert)
                .context(|| "load the CA certificate (--ca-cert)".to_string())?;
            (identity, anchor)
        }
        (None, None, None) => {
            let ca = CaDir::new(&args.ca_dir);
            let spinner = (!ca.ca_cert_path().exists() || !ca.cert_path(role).exists())
                .then(|| Spinner::new(quiet, "creating credentials (RSA key generation)"));
            let made = ca
                .ensure(role)
                .context(|| format!("prepare {role} credentials in {}", args.ca_dir.display()))?;
            drop(spinner);
            if let Some(made) = made {
                note(&made);
            }
            let identity = ca
                .load_identity(role)
                .context(|| format!("load the {role} credentials"))?;
            let anchor = ca
                .load_anchor()
                .context(|| "load the CA certificate".to_string())?;
            (identity, anchor)
        }
        // clap's `requires_all` rejects partial sets before we get here.
        _ => {
            return Err(CliError::new(
                "--cert, --key and --ca-cert go together: give all three, or none to use --ca-dir",
            ));
        }
    };
    Ok(Credentials {
        identity: Arc::new(LocalIdentity::new(identity)),
        anchor: Arc::new(anchor),
    })
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
