//! `minitls ca init|issue|show`: make the CA and its certificates, and describe certificates.

use std::path::{Path, PathBuf};

use minitls::pki::{self, CaDir, InitOptions, PkiError, Role, San};

use super::Global;
use super::args::{
    CaCheckArgs, CaCommand, CaInitArgs, CaIssueArgs, CaListArgs, CaRevokeArgs, CaShowArgs, RoleArg,
};
use super::creds::{Origin, with_fix};
use super::error::{CliError, CliResult, Context, out, report};
use super::progress::Spinner;

pub fn run(cmd: CaCommand, global: Global) -> CliResult<()> {
    match cmd {
        CaCommand::Init(a) => init(&a, global),
        CaCommand::Issue(a) => issue(&a, global),
        CaCommand::Show(a) => show(&a),
        CaCommand::List(a) => list(&a),
        CaCommand::Revoke(a) => revoke(&a),
        CaCommand::Check(a) => check(&a),
    }
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Server => Role::Server,
            RoleArg::Client => Role::Client,
        }
    }
}

fn parse_sans(flag: &str, names: &[String]) -> CliResult<Vec<San>> {
    names
        .iter()
        .map(|n| n.parse::<San>().context(|| flag.to_string()))
        .collect()
}

fn check_key_bits(bits: usize) -> CliResult<()> {
    if pki::ALLOWED_KEY_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "--key-bits {bits} is not supported; use 2048, 3072 or 4096"
        )))
    }
}

fn init(args: &CaInitArgs, global: Global) -> CliResult<()> {
    // Validate before the (slow) key generation.
    check_key_bits(args.key_bits)?;
    let opts = InitOptions {
        key_bits: args.key_bits,
        days: args.days,
        server_names: parse_sans("--server-name", &args.server_names)?,
        client_name: args.client_name.clone(),
        force: args.force,
    };
    let ca = CaDir::new(&args.dir);
    let spinner = Spinner::new(
        global.quiet,
        &format!("generating three RSA-{} keys", args.key_bits),
    );
    let origin = Origin::CaDir {
        dir: &args.dir,
        role: None,
    };
    let written = ca
        .init(&opts)
        .map_err(|e| CliError::new(format!("ca init: {}", with_fix(&e, origin))))?;
    drop(spinner);
    print_written(&written)?;
    let anchor = ca
        .load_anchor()
        .context(|| "read back the new CA certificate".to_string())?;
    out(&format!(
        "CA '{}', SHA-256 fingerprint {}",
        anchor.subject(),
        pki::fingerprint_hex(&anchor.fingerprint())
    ))
}

fn issue(args: &CaIssueArgs, global: Global) -> CliResult<()> {
    check_key_bits(args.key_bits)?;
    let sans = parse_sans("--san", &args.sans)?;
    let role = Role::from(args.role);
    let ca = CaDir::new(&args.dir);
    let spinner = Spinner::new(
        global.quiet,
        &format!("generating an RSA-{} key", args.key_bits),
    );
    let written = match (&args.out_cert, &args.out_key) {
        (Some(cert), Some(key)) => ca.issue_to(
            role,
            &args.name,
            &sans,
            args.days,
            args.key_bits,
            args.force,
            cert,
            key,
        ),
        _ => ca.issue(
            role,
            &args.name,
            &sans,
            args.days,
            args.key_bits,
            args.force,
        ),
    }
    .map_err(|e| match e {
        PkiError::AlreadyExists { path, .. } => CliError::new(format!(
            "ca issue --role {role} {}: {} already exists; pass --force to replace it, or \
             write elsewhere with --out-cert FILE --out-key FILE",
            args.name,
            path.display()
        )),
        e => CliError::new(format!(
            "ca issue --role {role} {}: {}",
            args.name,
            with_fix(
                &e,
                Origin::CaDir {
                    dir: &args.dir,
                    role: Some(role)
                }
            )
        )),
    })?;
    drop(spinner);
    print_written(&written)
}

fn print_written(paths: &[PathBuf]) -> CliResult<()> {
    for p in paths {
        out(&format!("wrote {}", p.display()))?;
    }
    Ok(())
}

fn show(args: &CaShowArgs) -> CliResult<()> {
    let files: Vec<PathBuf> = if args.files.is_empty() {
        let ca = CaDir::new(&args.dir);
        let found: Vec<PathBuf> = [
            ca.ca_cert_path(),
            ca.cert_path(Role::Server),
            ca.cert_path(Role::Client),
        ]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
        if found.is_empty() {
            return Err(CliError::new(format!(
                "no certificates in {}; run `minitls ca init --dir {}`, or name certificate files",
                args.dir.display(),
                args.dir.display()
            )));
        }
        found
    } else {
        args.files.clone()
    };
    let revoked = Revoked::of(&args.dir);
    let now = pki::now_unix();
    let mut failed = false;
    let mut first = true;
    for file in &files {
        let certs = match read_certificates(file) {
            Ok(c) => c,
            Err(e) => {
                failed = true;
                report(&e);
                continue;
            }
        };
        let count = certs.len();
        for (i, der) in certs.iter().enumerate() {
            let shown = pki::describe_certificate_der(der)
                .and_then(|text| Ok((text, pki::summarize_certificate_der(der)?)));
            let (text, summary) = match shown {
                Ok(v) => v,
                Err(e) => {
                    failed = true;
                    report(&CliError::new(format!("{}: {e}", file.display())));
                    continue;
                }
            };
            let (status, days_left) = status(summary.not_after_unix, now, revoked.has(der));
            if args.json {
                out(&show_json(file, i, &summary, &status, days_left))?;
                continue;
            }
            if !first {
                out("")?;
            }
            first = false;
            if count > 1 {
                out(&format!(
                    "{} (certificate {} of {count})",
                    file.display(),
                    i + 1
                ))?;
            } else {
                out(&file.display().to_string())?;
            }
            out(&format!("  {:<20} {status}", "status:"))?;
            for line in text.lines() {
                out(&format!("  {line}"))?;
            }
        }
    }
    if failed {
        Err(CliError::Reported(super::error::exit::OTHER))
    } else {
        Ok(())
    }
}

fn show_json(
    file: &Path,
    index: usize,
    s: &pki::CertSummary,
    status: &str,
    days_left: i64,
) -> String {
    use super::ls::json_string;
    let names: Vec<String> = s.names.iter().map(|n| json_string(n)).collect();
    format!(
        "{{\"file\":{},\"index\":{index},\"subject\":{},\"issuer\":{},\"serial\":\"{}\",\"role\":{},\"not_before\":\"{}\",\"not_after\":\"{}\",\"days_left\":{days_left},\"status\":{},\"names\":[{}],\"sha256\":\"{}\"}}",
        json_string(&file.display().to_string()),
        json_string(&s.subject),
        json_string(&s.issuer),
        s.serial,
        json_string(s.role),
        super::iso_utc(s.not_before_unix),
        super::iso_utc(s.not_after_unix),
        json_string(status),
        names.join(","),
        pki::fingerprint_hex(&s.sha256)
            .replace(':', "")
            .to_lowercase(),
    )
}

/// Every certificate in a file: PEM (one, a bundle or a chain file) or DER.
fn read_certificates(file: &Path) -> CliResult<Vec<Vec<u8>>> {
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
    pki::certificates_from_bytes(&bytes).context(|| file.display().to_string())
}

/// The revocations recorded in a CA directory, applied only to certificates that CA signed.
struct Revoked {
    anchor: Option<pki::TrustAnchor>,
    serials: Vec<Vec<u8>>,
}

impl Revoked {
    /// What `dir` records; nothing if it holds no CA (`ca show` of loose files).
    fn of(dir: &Path) -> Revoked {
        let ca = CaDir::new(dir);
        let anchor = ca.load_anchor().ok();
        let serials = match &anchor {
            Some(_) => ca
                .revocations()
                .map(|r| r.into_iter().map(|r| r.serial).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Revoked { anchor, serials }
    }

    fn has(&self, der: &[u8]) -> bool {
        let Some(anchor) = &self.anchor else {
            return false;
        };
        !self.serials.is_empty()
            && anchor.signed(der)
            && pki::serial_hex(der)
                .ok()
                .and_then(|hex| pki::parse_serial_hex(&hex).ok())
                .is_some_and(|serial| self.serials.contains(&serial))
    }
}

/// A certificate's status at `now` and its whole days left: `revoked`, `expired`,
/// `expires in N days` (under [`EXPIRES_SOON_DAYS`]) or `valid`.
fn status(not_after: i64, now: i64, revoked: bool) -> (String, i64) {
    let days_left = (not_after - now).div_euclid(86_400);
    let status = if revoked {
        "revoked".to_string()
    } else if not_after < now {
        "expired".to_string()
    } else if days_left < EXPIRES_SOON_DAYS {
        format!("expires in {days_left} days")
    } else {
        "valid".to_string()
    };
    (status, days_left)
}

/// Whether something valid until `not_after` expires within `days` of `now` (as
/// `openssl x509 -checkend`: strictly before the end of the window).
fn expires_within(not_after: i64, now: i64, days: u32) -> bool {
    not_after < now.saturating_add(i64::from(days) * 86_400)
}

fn check(args: &CaCheckArgs) -> CliResult<()> {
    let now = pki::now_unix();
    // (what, notAfter) of everything checked.
    let mut items: Vec<(String, i64)> = Vec::new();
    if args.files.is_empty() {
        let ca = CaDir::new(&args.dir);
        let anchor = ca
            .load_anchor()
            .context(|| format!("ca check: load the CA of {}", args.dir.display()))?;
        items.push((
            format!(
                "CA certificate {} ({})",
                ca.ca_cert_path().display(),
                anchor.subject()
            ),
            anchor.not_after_unix(),
        ));
        let revoked = Revoked::of(&args.dir);
        let issued = ca
            .issued()
            .context(|| format!("list the certificates of {}", args.dir.display()))?;
        let issued = if issued.is_empty() {
            // Made before issued/ existed: the leaves in the directory itself.
            [Role::Server, Role::Client]
                .into_iter()
                .map(|r| ca.cert_path(r))
                .filter(|p| p.exists())
                .map(|p| read_certificates(&p))
                .collect::<CliResult<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect()
        } else {
            issued
        };
        for der in issued {
            if revoked.has(&der) {
                continue; // revoked: nothing to renew
            }
            let s = pki::summarize_certificate_der(&der)
                .context(|| format!("read a certificate of {}", args.dir.display()))?;
            items.push((
                format!(
                    "{} certificate '{}' (serial {})",
                    s.role,
                    super::error::printable(&s.common_name),
                    s.serial
                ),
                s.not_after_unix,
            ));
        }
        if ca.crl_path().exists() {
            let crl = pki::load_crl_file(&ca.crl_path(), &anchor).map_err(|e| creds_crl(&e))?;
            if let Some(next) = crl.next_update_unix() {
                items.push((
                    format!(
                        "CRL {} (nextUpdate; re-sign with `minitls ca revoke`)",
                        ca.crl_path().display()
                    ),
                    next,
                ));
            }
        }
    } else {
        for file in &args.files {
            let certs = read_certificates(file)?;
            let count = certs.len();
            for (i, der) in certs.iter().enumerate() {
                let s =
                    pki::summarize_certificate_der(der).context(|| file.display().to_string())?;
                let which = if count > 1 {
                    format!("{} (certificate {} of {count})", file.display(), i + 1)
                } else {
                    file.display().to_string()
                };
                items.push((format!("{which}: {}", s.subject), s.not_after_unix));
            }
        }
    }
    let expiring: Vec<&(String, i64)> = items
        .iter()
        .filter(|(_, not_after)| expires_within(*not_after, now, args.within))
        .collect();
    for (what, not_after) in &expiring {
        let when = if *not_after < now {
            format!("expired on {}", super::iso_utc(*not_after))
        } else {
            format!(
                "expires on {} (in {} days)",
                super::iso_utc(*not_after),
                (*not_after - now).div_euclid(86_400)
            )
        };
        out(&format!("{what}: {when}"))?;
    }
    if expiring.is_empty() {
        out(&format!(
            "nothing expires within {} days ({} checked)",
            args.within,
            items.len()
        ))
    } else {
        out(&format!(
            "{} of {} expire within {} days",
            expiring.len(),
            items.len(),
            args.within
        ))?;
        Err(CliError::Reported(super::error::exit::OTHER))
    }
}

fn creds_crl(e: &PkiError) -> CliError {
    super::creds::crl_error(e)
}

/// Days in which a certificate counts as "expires soon" in `ca list`.
const EXPIRES_SOON_DAYS: i64 = 30;

fn list(args: &CaListArgs) -> CliResult<()> {
    let ca = CaDir::new(&args.dir);
    let issued = ca
        .issued()
        .context(|| format!("list the certificates of {}", args.dir.display()))?;
    if issued.is_empty() && !args.json {
        return Err(CliError::new(format!(
            "no issued certificates recorded in {}; `minitls ca init --dir {}` and `minitls ca \
             issue` record what they issue there",
            ca.issued_dir().display(),
            args.dir.display()
        )));
    }
    let revoked = ca
        .revocations()
        .context(|| format!("read the revocations of {}", args.dir.display()))?;
    let now = pki::now_unix();
    for der in issued {
        let s = pki::summarize_certificate_der(&der)
            .context(|| format!("read a certificate in {}", ca.issued_dir().display()))?;
        let serial = pki::parse_serial_hex(&s.serial).unwrap_or_default();
        let (status, days_left) = status(
            s.not_after_unix,
            now,
            revoked.iter().any(|r| r.serial == serial),
        );
        if args.json {
            out(&format!(
                "{{\"role\":{},\"name\":{},\"serial\":\"{}\",\"not_after\":\"{}\",\"days_left\":{},\"status\":{},\"sha256\":\"{}\"}}",
                super::ls::json_string(s.role),
                super::ls::json_string(&s.common_name),
                s.serial,
                super::iso_utc(s.not_after_unix),
                days_left,
                super::ls::json_string(&status),
                pki::fingerprint_hex(&s.sha256)
                    .replace(':', "")
                    .to_lowercase(),
            ))?;
        } else {
            out(&format!(
                "{:<7} {:<20} {} {}  {}",
                s.role,
                super::error::printable(&s.common_name),
                s.serial,
                super::iso_utc(s.not_after_unix),
                status
            ))?;
        }
    }
    Ok(())
}

fn revoke(args: &CaRevokeArgs) -> CliResult<()> {
    let ca = CaDir::new(&args.dir);
    let mut serials = Vec::new();
    for text in &args.serials {
        let serial =
            pki::parse_serial_hex(text).map_err(|e| CliError::usage(format!("--serial: {e}")))?;
        serials.push(serial);
    }
    if !args.files.is_empty() {
        let anchor = ca
            .load_anchor()
            .context(|| format!("ca revoke: load the CA of {}", args.dir.display()))?;
        for file in &args.files {
            let bytes = std::fs::read(file)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
            let certs = pki::certificates_from_bytes(&bytes)
                .context(|| format!("ca revoke {}", file.display()))?;
            let [der] = certs.as_slice() else {
                return Err(CliError::new(format!(
                    "ca revoke {}: the file holds {} certificates; name a file with just the \
                     one to revoke, or use --serial HEX",
                    file.display(),
                    certs.len()
                )));
            };
            if !anchor.signed(der) {
                return Err(CliError::new(format!(
                    "ca revoke {}: this certificate was not issued by the CA in {} ('{}'); \
                     revoke it with the CA that issued it",
                    file.display(),
                    args.dir.display(),
                    anchor.subject()
                )));
            }
            let summary = pki::summarize_certificate_der(der)
                .context(|| format!("ca revoke {}", file.display()))?;
            serials.push(
                pki::parse_serial_hex(&summary.serial)
                    .context(|| format!("ca revoke {}", file.display()))?,
            );
        }
    }
    let known: Vec<String> = ca
        .issued()
        .context(|| format!("list the certificates of {}", args.dir.display()))?
        .iter()
        .filter_map(|der| pki::serial_hex(der).ok())
        .collect();
    for serial in &serials {
        let hex = pki::serial_to_hex(serial);
        if !known
            .iter()
            .any(|k| pki::parse_serial_hex(k).ok().as_ref() == Some(serial))
        {
            super::error::note(&format!(
                "note: serial {hex} is not among the certificates recorded in {}; revoking it \
                 anyway",
                ca.issued_dir().display()
            ));
        }
    }
    let outcome = ca.revoke(&serials, args.days).map_err(|e| {
        CliError::new(format!(
            "ca revoke (CA in {}): {}",
            args.dir.display(),
            with_fix(
                &e,
                Origin::CaDir {
                    dir: &args.dir,
                    role: None
                }
            )
        ))
    })?;
    for hex in &outcome.added {
        out(&format!("revoked {hex}"))?;
    }
    for hex in &outcome.already {
        out(&format!("{hex} was already revoked"))?;
    }
    out(&format!(
        "wrote {} ({} revoked certificate(s), next update {})",
        outcome.crl_path.display(),
        outcome.total,
        super::iso_utc(outcome.next_update_unix)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn expires_within_is_strict_at_the_end_of_the_window() {
        let now = 1_800_000_000;
        assert!(!expires_within(now + 10 * DAY, now, 10));
        assert!(expires_within(now + 10 * DAY - 1, now, 10));
        assert!(!expires_within(now, now, 0));
        assert!(expires_within(now - 1, now, 0));
        assert!(!expires_within(i64::MAX, now, u32::MAX));
    }

    #[test]
    fn status_names_revoked_expired_soon_and_valid() {
        let now = 1_800_000_000;
        assert_eq!(status(now + 100 * DAY, now, true).0, "revoked");
        assert_eq!(status(now - 1, now, false).0, "expired");
        assert_eq!(status(now, now, false).0, "expires in 0 days");
        assert_eq!(
            status(now + 29 * DAY + 5, now, false).0,
            "expires in 29 days"
        );
        assert_eq!(status(now + 30 * DAY, now, false).0, "valid");
    }
}
