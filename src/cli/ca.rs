//! `minitls ca init|issue|show`: make the CA and its certificates, and describe certificates.

use std::path::{Path, PathBuf};

use minitls::pki::{self, CaDir, InitOptions, Role, San};

use super::Global;
use super::args::{CaCommand, CaInitArgs, CaIssueArgs, CaShowArgs, RoleArg};
use super::error::{CliError, CliResult, Context, out, report};
use super::progress::Spinner;

pub fn run(cmd: CaCommand, global: Global) -> CliResult<()> {
    match cmd {
        CaCommand::Init(a) => init(&a, global),
        CaCommand::Issue(a) => issue(&a, global),
        CaCommand::Show(a) => show(&a),
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
    let written = ca
        .issue(
            role,
            &args.name,
            &sans,
            args.days,
            args.key_bits,
            args.force,
        )
        .context(|| format!("ca issue --role {role} {}", args.name))?;
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
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

fn describe(file: &Path) -> CliResult<String> {
    let pem = std::fs::read_to_string(file)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
    pki::describe_certificate_pem(&pem).context(|| file.display().to_string())
}
