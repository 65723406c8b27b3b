//! The client's config file, `$XDG_CONFIG_HOME/minitls/config.toml` (else
//! `~/.config/minitls/config.toml`), or the file `--config` / `MINITLS_CONFIG` names.
//!
//! It holds defaults for `fetch`, `ls` and `verify`, and sits under everything else, as
//! `.curlrc` and `ssh_config` do: a flag beats an environment variable (`MINITLS_...`), which
//! beats the file, which beats the built-in default. clap tells us where each value came from
//! ([`ValueSource`]); the file fills only the values that are still defaults.
//!
//! - Credentials are one group: when any of `--ca-dir`, `--cert`, `--key`, `--ca-cert` came
//!   from the command line or the environment, the file's credentials are not used at all
//!   (a command-line `--ca-dir` must not be overridden by the file's `cert`).
//! - `server-name` belongs with the file's `server`: a `--server` given otherwise drops it
//!   (the name of one host must not be checked against another).
//! - Relative paths are relative to the file's directory; `~/` is the home directory.
//! - Unknown keys are refused, naming the file, the line and the key: a misspelt `sever`
//!   must not silently fetch from the default server.

use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use super::Global;
use super::args::{Command, CredentialArgs, ServerArgs, parse_server_addr};
use super::error::{CliError, CliResult, note};

/// The file's name inside the config directory.
const FILE_NAME: &str = "minitls/config.toml";
/// A config file larger than this is not a config file.
const MAX_LEN: u64 = 1 << 20;

/// The keys of the config file (all optional).
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// `--server HOST[:PORT]`.
    pub server: Option<String>,
    /// `--server-name NAME` (used only with this file's `server`, or with none given).
    pub server_name: Option<String>,
    /// `--ca-dir DIR`.
    pub ca_dir: Option<PathBuf>,
    /// `--cert FILE` (with `key` and `ca-cert`).
    pub cert: Option<PathBuf>,
    /// `--key FILE` (with `cert` and `ca-cert`).
    pub key: Option<PathBuf>,
    /// `--ca-cert FILE` (with `cert` and `key`; `verify` uses it alone).
    pub ca_cert: Option<PathBuf>,
    /// `fetch --out DIR`.
    pub out: Option<PathBuf>,
}

/// Where the config file is: `--config`/`MINITLS_CONFIG` (must exist), else the XDG place
/// (may be missing). `None` with `--no-config`.
fn location(explicit: Option<&Path>, no_config: bool) -> Option<(PathBuf, bool)> {
    if no_config {
        return None;
    }
    if let Some(p) = explicit {
        return Some((p.to_path_buf(), true));
    }
    // XDG Base Directory: a relative XDG_CONFIG_HOME is invalid and ignored.
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some((base.join(FILE_NAME), false))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Reads and parses the config file, if there is one to read.
pub fn load(explicit: Option<&Path>, no_config: bool) -> CliResult<Option<(PathBuf, FileConfig)>> {
    let Some((path, named)) = location(explicit, no_config) else {
        return Ok(None);
    };
    let flag = if named {
        "(named by --config or MINITLS_CONFIG) "
    } else {
        ""
    };
    let text = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::usage(format!(
                "config file {} {flag}does not exist; name an existing file, or use --no-config",
                path.display()
            )));
        }
        Err(e) => {
            return Err(CliError::usage(format!(
                "cannot read config file {} {flag}: {e}; fix its permissions, or use --no-config",
                path.display()
            )));
        }
        Ok(m) if m.len() > MAX_LEN => {
            return Err(CliError::usage(format!(
                "config file {} is larger than 1 MiB; is it the right file? (--config, --no-config)",
                path.display()
            )));
        }
        Ok(_) => std::fs::read_to_string(&path).map_err(|e| {
            CliError::usage(format!(
                "cannot read config file {} {flag}: {e}; fix it, or use --no-config",
                path.display()
            ))
        })?,
    };
    let config = parse(&text).map_err(|what| {
        CliError::usage(format!(
            "config file {}: {what}; fix the file, or use --no-config to ignore it",
            path.display()
        ))
    })?;
    Ok(Some((path, config)))
}

/// Parses config text; the error names the line and, for an unknown key, the key and the
/// keys there are.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map(|before| before.matches('\n').count() + 1);
        let message = e.message().trim().replace('\n', " ");
        // serde says "field"; in a config file it is a key.
        let message = message
            .replace("unknown field", "unknown key")
            .replace("expected one of", "the keys are");
        match line {
            Some(n) => format!("line {n}: {message}"),
            None => message,
        }
    })
}

/// A path from the file: `~/` is home, a relative path is relative to the file's directory.
fn resolve(path: &Path, dir: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// True when clap filled `id` from nothing but its default (or left it empty).
fn is_default(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.try_get_raw(id).ok().and_then(|_| m.value_source(id)),
        None | Some(ValueSource::DefaultValue)
    )
}

/// Fills the values of `command` that are still defaults from the config file. Only the
/// client's commands read it.
/// `explicit` is `--config`/`MINITLS_CONFIG`.
pub fn apply(
    command: &mut Command,
    matches: &ArgMatches,
    explicit: Option<&Path>,
    no_config: bool,
    global: Global,
) -> CliResult<()> {
    let Some((_, sub)) = matches.subcommand() else {
        return Ok(());
    };
    if !matches!(
        command,
        Command::Fetch(_)
            | Command::Ls(_)
            | Command::Push(_)
            | Command::Shell(_)
            | Command::Verify(_)
    ) {
        return Ok(());
    }
    let Some((path, config)) = load(explicit, no_config)? else {
        return Ok(());
    };
    if global.verbose {
        note(&format!("config: {}", path.display()));
    }
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let bad = |what: String| {
        CliError::usage(format!(
            "config file {}: {what}; fix the file, or use --no-config to ignore it",
            path.display()
        ))
    };
    match command {
        Command::Fetch(a) => {
            apply_server(&mut a.server, &config, sub).map_err(bad)?;
            apply_creds(&mut a.creds, &config, &dir, sub).map_err(bad)?;
            if let Some(out) = &config.out
                && is_default(sub, "out")
            {
                a.out = resolve(out, &dir);
            }
        }
        Command::Ls(a) => {
            apply_server(&mut a.server, &config, sub).map_err(bad)?;
            apply_creds(&mut a.creds, &config, &dir, sub).map_err(bad)?;
        }
        Command::Push(a) => {
            apply_server(&mut a.server, &config, sub).map_err(bad)?;
            apply_creds(&mut a.creds, &config, &dir, sub).map_err(bad)?;
        }
        Command::Shell(a) => {
            apply_server(&mut a.server, &config, sub).map_err(bad)?;
            apply_creds(&mut a.creds, &config, &dir, sub).map_err(bad)?;
        }
        // verify needs only the CA: --ca-cert, else --ca-dir.
        Command::Verify(a) if is_default(sub, "ca_dir") && is_default(sub, "ca_cert") => {
            if let Some(p) = &config.ca_cert {
                a.ca_cert = Some(resolve(p, &dir));
            } else if let Some(p) = &config.ca_dir {
                a.ca_dir = resolve(p, &dir);
            }
        }
        _ => {}
    }
    Ok(())
}

fn apply_server(
    server: &mut ServerArgs,
    config: &FileConfig,
    m: &ArgMatches,
) -> Result<(), String> {
    let server_from_file = match &config.server {
        Some(s) if is_default(m, "server") => {
            server.server = parse_server_addr(s).map_err(|e| format!("server = \"{s}\": {e}"))?;
            true
        }
        Some(_) => false,
        None => is_default(m, "server"),
    };
    if let Some(name) = &config.server_name
        && server_from_file
        && is_default(m, "server_name")
    {
        server.server_name = Some(name.clone());
    }
    Ok(())
}

fn apply_creds(
    creds: &mut CredentialArgs,
    config: &FileConfig,
    dir: &Path,
    m: &ArgMatches,
) -> Result<(), String> {
    let explicit = ["ca_dir", "cert", "key", "ca_cert"]
        .iter()
        .any(|id| !is_default(m, id));
    if explicit {
        return Ok(());
    }
    match (&config.cert, &config.key, &config.ca_cert) {
        (Some(c), Some(k), Some(a)) => {
            creds.cert = Some(resolve(c, dir));
            creds.key = Some(resolve(k, dir));
            creds.ca_cert = Some(resolve(a, dir));
        }
        (None, None, None) => {}
        _ => {
            return Err(
                "cert, key and ca-cert go together: give all three, or none to use ca-dir".into(),
            );
        }
    }
    if let Some(d) = &config.ca_dir {
        creds.ca_dir = resolve(d, dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_and_an_empty_file_is_no_config() {
        assert_eq!(parse("").unwrap(), FileConfig::default());
        let c = parse(
            "server = \"files.example.org\"\nserver-name = \"files\"\nca-dir = \"~/ca\"\n\
             cert = \"a.crt\"\nkey = \"a.key\"\nca-cert = \"/etc/ca.crt\"\nout = \"in\"\n",
        )
        .unwrap();
        assert_eq!(c.server.as_deref(), Some("files.example.org"));
        assert_eq!(c.server_name.as_deref(), Some("files"));
        assert_eq!(c.out, Some(PathBuf::from("in")));
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line_and_name() {
        let e = parse("server = \"a\"\nsever = \"b\"\n").unwrap_err();
        assert!(e.starts_with("line 2: unknown key `sever`"), "{e}");
        assert!(e.contains("the keys are"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse("server = 4041\n").unwrap_err();
        assert!(e.starts_with("line 1:"), "{e}");
    }

    #[test]
    fn paths_are_relative_to_the_file_and_tilde_is_home() {
        let dir = Path::new("/etc/minitls");
        assert_eq!(
            resolve(Path::new("ca"), dir),
            PathBuf::from("/etc/minitls/ca")
        );
        assert_eq!(resolve(Path::new("/x/ca"), dir), PathBuf::from("/x/ca"));
        if let Some(h) = home() {
            assert_eq!(resolve(Path::new("~/ca"), dir), h.join("ca"));
        }
    }
}
