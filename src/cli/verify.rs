//! `minitls verify FILE...`: offline check of received files against their stored signatures.

use minitls::pki::{self, CaDir, TrustAnchor};
use minitls::sigfile;

use super::args::VerifyArgs;
use super::error::{CliError, CliResult, Context, out, printable, report};
use super::{Global, iso_utc};

pub fn run(args: &VerifyArgs, _global: Global) -> CliResult<()> {
    let anchor = load_anchor(args)?;
    let mut failed = 0usize;
    for file in &args.files {
        // A directory fetched with -r is checked whole against its manifest.
        if file.is_dir() {
            match sigfile::verify_tree(file, &anchor) {
                Ok(t) => out(&format!(
                    "OK {} ({} files, {} directories, {} bytes, signed by '{}' at {})",
                    file.display(),
                    t.files,
                    t.dirs,
                    t.bytes,
                    printable(&t.signer_subject),
                    iso_utc(t.signed_at)
                ))?,
                Err(e) => {
                    failed += 1;
                    report(&CliError::new(format!("verify {}: {e}", file.display())));
                }
            }
            continue;
        }
        match sigfile::verify_file(file, &anchor) {
            Ok(v) => out(&format!(
                "OK {} ({} bytes, {} '{}' at {})",
                file.display(),
                v.statement.size,
                match v.signer_role {
                    pki::Role::Server => "signed by",
                    pki::Role::Client => "uploaded and signed by client",
                },
                printable(&v.signer_subject),
                iso_utc(v.statement.signed_at)
            ))?,
            Err(e) => {
                failed += 1;
                report(&CliError::new(format!("verify {}: {e}", file.display())));
            }
        }
    }
    if failed > 0 {
        Err(CliError::Reported(super::error::exit::INTEGRITY))
    } else {
        Ok(())
    }
}

/// The CA the signer must chain to. Never created here: a new CA could not vouch for anything.
fn load_anchor(args: &VerifyArgs) -> CliResult<TrustAnchor> {
    if let Some(path) = &args.ca_cert {
        if !path.exists() {
            return Err(CliError::new(format!(
                "--ca-cert {}: no such file; name the CA certificate that issued the server's \
                 certificate",
                path.display()
            )));
        }
        return pki::load_anchor_file(path).context(|| "load the CA certificate".to_string());
    }
    let ca = CaDir::new(&args.ca_dir);
    if !ca.ca_cert_path().exists() {
        return Err(CliError::new(format!(
            "{} does not exist; verify needs the CA certificate that issued the server's \
             certificate: pass --ca-dir DIR or --ca-cert FILE",
            ca.ca_cert_path().display()
        )));
    }
    ca.load_anchor()
        .context(|| "load the CA certificate".to_string())
}
