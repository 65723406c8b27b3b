//! `minitls ca init|issue|show`: make the CA and its certificates, and describe certificates.

use std::path::{Path, PathBuf};

use minitls::pki::{self, CaDir, InitOptions, PkiError, Role, San};

use super::Global;
use super::args::{
    CaCommand, CaInitArgs, CaIssueArgs, CaListArgs, CaRevokeArgs, CaShowArgs, RoleArg,
};
use super::error::{CliError, CliResult, Context, out, report};
use super::progress::Spinner;

pub fn run(cmd: CaCommand, global: Global) -> CliResult<()> {
    match cmd {
        CaCommand::Init(a) => init(&a, global),
        CaCommand::Issue(a) => issue(&a, global),
        CaCommand::Show(a) => show(&a),
        CaCommand::List(a) => list(&a),
        CaCommand::Revoke(a) => revoke(&a),
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
    let written = ca.init(&opts).context(|| "ca init".to_string())?;
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
        e => CliError::new(format!("ca issue --role {role} {}: {e}", args.name)),
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
    let mut failed = false;
    for (i, file) in files.iter().enumerate() {
        match describe(file) {
            Ok(text) => {
                if i > 0 {
                    out("")?;
                }
                out(&file.display().to_string())?;
                for line in text.lines() {
                    out(&format!("  {line}"))?;
                }
            }
            Err(e) => {
                failed = true;
                report(&e);
            }
        }
    }
    if failed {
        Err(CliError::Reported(super::error::exit::OTHER))
    } else {
        Ok(())
    }
}

fn describe(file: &Path) -> CliResult<String> {
    let pem = std::fs::read_to_string(file)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
    pki::describe_certificate_pem(&pem).context(|| file.display().to_string())
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
        let days_left = (s.not_after_unix - now).div_euclid(86_400);
        let serial = pki::parse_serial_hex(&s.serial).unwrap_or_default();
        let status = if revoked.iter().any(|r| r.serial == serial) {
            "revoked".to_string()
        } else if s.not_after_unix <= now {
            "expired".to_string()
        } else if days_left < EXPIRES_SOON_DAYS {
            format!("expires in {days_left} days")
        } else {
            "valid".to_string()
        };
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
    let outcome = ca
        .revoke(&serials, args.days)
        .context(|| format!("ca revoke (CA in {})", args.dir.display()))?;
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
