//! `minitls verify FILE...`: offline check of received files against their stored signatures.

use std::path::{Path, PathBuf};

use minitls::audit::json_string;
use minitls::pki::{self, CaDir, TrustAnchor};
use minitls::sigfile;

use super::args::VerifyArgs;
use super::error::{CliError, CliResult, Context, out, printable, report};
use super::fetch::count;
use super::{Global, iso_utc};

pub fn run(args: &VerifyArgs, _global: Global) -> CliResult<()> {
    let anchor = load_anchor(args)?;
    let mut failed = 0usize;
    for file in &args.files {
        let ok = if file.is_dir() {
            // A directory fetched with -r is checked whole against its manifest.
            tree(file, &anchor, args.json)?
        } else {
            single(file, &anchor, args.json)?
        };
        if !ok {
            failed += 1;
        }
    }
    if failed > 0 {
        Err(CliError::Reported(super::error::exit::INTEGRITY))
    } else {
        Ok(())
    }
}

/// Checks one file; prints its line (or object) and any error. True if it verified.
fn single(file: &Path, anchor: &TrustAnchor, json: bool) -> CliResult<bool> {
    let shown = file.display().to_string();
    match sigfile::verify_file(file, anchor) {
        Ok(v) => {
            out(&if json {
                format!(
                    "{{\"path\":{},\"type\":\"file\",\"ok\":true,\"bytes\":{},\"sha256\":\"{}\",\
                     \"signer\":{},\"signer_role\":\"{}\",\"signed_at\":\"{}\",\"error\":null}}",
                    json_string(&shown),
                    v.statement.size,
                    sigfile::hex(&v.statement.sha256),
                    json_string(&v.signer_subject),
                    match v.signer_role {
                        pki::Role::Server => "server",
                        pki::Role::Client => "client",
                    },
                    iso_utc(v.statement.signed_at)
                )
            } else {
                format!(
                    "OK {shown} ({} bytes, {} '{}' at {})",
                    v.statement.size,
                    match v.signer_role {
                        pki::Role::Server => "signed by",
                        pki::Role::Client => "uploaded and signed by client",
                    },
                    printable(&v.signer_subject),
                    iso_utc(v.statement.signed_at)
                )
            })?;
            Ok(true)
        }
        Err(e) => {
            let err = CliError::new(format!("verify {shown}: {e}"));
            if json {
                out(&format!(
                    "{{\"path\":{},\"type\":\"file\",\"ok\":false,\"error\":{}}}",
                    json_string(&shown),
                    json_string(&e.to_string())
                ))?;
            }
            report(&err);
            Ok(false)
        }
    }
}

/// Checks a tree root against its manifest and reports every missing, altered and extra
/// entry (text: one line each on stdout, then one error line). True if the tree is intact.
fn tree(dir: &Path, anchor: &TrustAnchor, json: bool) -> CliResult<bool> {
    let shown = dir.display().to_string();
    let r = match sigfile::check_tree(dir, anchor) {
        Ok(r) => r,
        Err(e) => {
            if json {
                out(&format!(
                    "{{\"path\":{},\"type\":\"tree\",\"ok\":false,\"error\":{}}}",
                    json_string(&shown),
                    json_string(&e.to_string())
                ))?;
            }
            report(&CliError::new(format!("verify {shown}: {e}")));
            return Ok(false);
        }
    };
    let t = &r.signed;
    let problems = format!(
        "{} missing, {} altered, {} extra",
        r.missing.len(),
        r.altered.len(),
        r.extra.len()
    );
    if json {
        let paths = |v: &[PathBuf]| {
            v.iter()
                .map(|p| json_string(&p.display().to_string()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let altered: Vec<String> = r
            .altered
            .iter()
            .map(|(p, why)| {
                format!(
                    "{{\"path\":{},\"reason\":{}}}",
                    json_string(&p.display().to_string()),
                    json_string(why)
                )
            })
            .collect();
        out(&format!(
            "{{\"path\":{},\"type\":\"tree\",\"ok\":{},\"files\":{},\"dirs\":{},\"bytes\":{},\
             \"signer\":{},\"signed_at\":\"{}\",\"missing\":[{}],\"altered\":[{}],\"extra\":[{}],\
             \"error\":{}}}",
            json_string(&shown),
            r.is_intact(),
            t.files,
            t.dirs,
            t.bytes,
            json_string(&t.signer_subject),
            iso_utc(t.signed_at),
            paths(&r.missing),
            altered.join(","),
            paths(&r.extra),
            if r.is_intact() {
                "null".to_string()
            } else {
                json_string(&problems)
            }
        ))?;
    } else if r.is_intact() {
        out(&format!(
            "OK {shown} ({}, {}, {} bytes, signed by '{}' at {})",
            count(t.files, "file", "files"),
            count(t.dirs, "directory", "directories"),
            t.bytes,
            printable(&t.signer_subject),
            iso_utc(t.signed_at)
        ))?;
    } else {
        for p in &r.missing {
            out(&format!("MISSING {}", printable(&p.display().to_string())))?;
        }
        for (p, why) in &r.altered {
            out(&format!(
                "ALTERED {}: {why}",
                printable(&p.display().to_string())
            ))?;
        }
        for p in &r.extra {
            out(&format!(
                "EXTRA {} (not in the signed manifest)",
                printable(&p.display().to_string())
            ))?;
        }
    }
    if r.is_intact() {
        return Ok(true);
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    report(&CliError::new(format!(
        "verify {shown}: {problems} against its signed manifest of {} and {}; fetch it again \
         with `minitls fetch -r {} --out {}` (extra names are never signed: move them out of \
         the tree)",
        count(t.files, "file", "files"),
        count(t.dirs, "directory", "directories"),
        // The served directory itself is the root "" (fetched as `.`).
        if t.root.is_empty() {
            ".".to_string()
        } else {
            printable(&t.root)
        },
        parent.display()
    )));
    Ok(false)
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
