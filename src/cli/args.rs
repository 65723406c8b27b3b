//! The command line as clap structs: the doc comments are the help text (SPEC §1).

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

/// The exit statuses (SPEC §1.1), shown under `minitls --help`.
const EXIT_STATUS_HELP: &str = "Exit status:
  0  success
  1  any other error
  2  usage error (bad flags or arguments)
  3  could not reach the server (name resolution, refused, timed out, busy)
  4  authentication failed (a certificate rejected, revoked or expired, a handshake refused)
  5  the server refused the request (not found, not allowed, is a directory)
  6  local I/O failed (cannot write, disk full)
  7  integrity failed (bad signature, tampered or truncated data; verify found a mismatch)
  8  partial: a tree was fetched but some entries were skipped
130  fetch interrupted by Ctrl-C (128 + the signal's number)";

/// Move files between machines that trust one small private certificate authority.
///
/// Both ends prove who they are with certificates from that CA, every byte on the wire is
/// encrypted and authenticated, and every received file keeps the server's signature so that
/// `minitls verify` can check it later, offline.
///
/// Quick start (one machine): `minitls serve` in one terminal, `minitls fetch hello.txt` in
/// another. Both create a CA and credentials in ca/ if there are none.
#[derive(Debug, Parser)]
#[command(
    name = "minitls",
    version,
    propagate_version = true,
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    /// Say more: handshake steps, sizes, digests and signers.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Say less: no progress bars and no per-connection log lines (errors are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Read defaults for fetch, ls, push, shell and verify from this file instead of
    /// $XDG_CONFIG_HOME/minitls/config.toml (else ~/.config/minitls/config.toml); flags and
    /// MINITLS_* variables override it.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "MINITLS_CONFIG",
        value_hint = ValueHint::FilePath
    )]
    pub config: Option<PathBuf>,

    /// Read no config file.
    #[arg(long, global = true)]
    pub no_config: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make and inspect the CA and its certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Serve a directory to clients holding a certificate from the CA.
    Serve(ServeArgs),
    /// Fetch a file from a server; it is written only after its signature checks out.
    Fetch(FetchArgs),
    /// Upload files or trees; each is signed with the client's key and stored by the server
    /// only after that signature checks out (needs a write grant in the server's policy).
    Push(PushArgs),
    /// List files on a server.
    Ls(LsArgs),
    /// An interactive session on one connection, like sftp: ls, cd, get, put, say... with
    /// line editing, history and tab completion; or commands from a file (-b) or a pipe,
    /// stopping at the first that fails.
    #[command(after_help = super::shell::HELP_AFTER)]
    Shell(ShellArgs),
    /// Talk to a running server's control socket (`serve --control SOCKET`): list its
    /// clients, drop one, send one a message, stop it.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Check received files against their stored signatures, offline.
    Verify(VerifyArgs),
    /// Print a shell completion script on stdout, e.g.
    /// `minitls completions bash > ~/.local/share/bash-completion/completions/minitls`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, e.g. `minitls man | man -l -`.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The page of one command (`minitls man fetch` is minitls-fetch(1)) [default: minitls(1),
    /// which lists the commands].
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA with a server and a client certificate (never overwrites without --force).
    Init(CaInitArgs),
    /// Issue a server or client certificate from an existing CA.
    Issue(CaIssueArgs),
    /// Describe certificates: subject, issuer, validity, names, usages, fingerprint.
    Show(CaShowArgs),
    /// List every certificate this CA issued (kept in DIR/issued/): role, name, serial,
    /// expiry and status.
    List(CaListArgs),
    /// Check expiry: exit 0 when nothing expires within DAYS, 1 otherwise, listing what does
    /// (the CA's issued certificates and its CRL, or the named files).
    Check(CaCheckArgs),
    /// Revoke certificates: records them in DIR/revoked.txt and writes DIR/crl.pem, which
    /// `serve` and `fetch` then honour (a running server picks it up at its next connection).
    Revoke(CaRevokeArgs),
}

#[derive(Debug, Args)]
pub struct CaCheckArgs {
    /// Certificate files (PEM, bundles too, or DER) to check instead of the CA directory.
    #[arg(value_name = "CERT_FILE", conflicts_with = "dir", value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,

    /// Days ahead: anything whose notAfter (or the CRL's nextUpdate) falls within them is
    /// listed and the exit status is 1.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub within: u32,

    /// The CA directory: ca.crt, every certificate recorded in DIR/issued/ that is not
    /// revoked, and DIR/crl.pem.
    #[arg(long, default_value = "ca", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CaRevokeArgs {
    /// Certificate files (PEM or DER) to revoke; they must have been issued by this CA.
    #[arg(
        value_name = "CERT_FILE",
        required_unless_present = "serials",
        value_hint = ValueHint::FilePath
    )]
    pub files: Vec<PathBuf>,

    /// Serial numbers (hex, as `minitls ca list` and `openssl x509 -serial` print them) to
    /// revoke instead of files; repeat for several.
    #[arg(long = "serial", value_name = "HEX", conflicts_with = "files")]
    pub serials: Vec<String>,

    /// The CA directory (ca.crt and ca.key sign the list).
    #[arg(long, default_value = "ca", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,

    /// Days until the CRL's nextUpdate; a server refuses a CRL past it, and any later
    /// `ca revoke` (even of a serial already revoked) re-signs the list.
    #[arg(long, default_value_t = minitls::pki::DEFAULT_CRL_DAYS)]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct CaListArgs {
    /// The CA directory.
    #[arg(long, default_value = "ca", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,

    /// One JSON object per line: role, name, serial, not_after, days_left, status, sha256.
    #[arg(long)]
    pub json: bool,
}

/// How `serve` writes its audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which end a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The serving end (extended key usage serverAuth; carries the names clients check).
    Server,
    /// The fetching end (extended key usage clientAuth).
    Client,
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Directory for ca.crt, ca.key, server.crt, server.key, client.crt, client.key.
    #[arg(long, default_value = "ca", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,

    /// Replace an existing CA and all its credentials.
    #[arg(long)]
    pub force: bool,

    /// RSA key size in bits: 2048, 3072 or 4096.
    #[arg(long, default_value_t = minitls::pki::DEFAULT_KEY_BITS)]
    pub key_bits: usize,

    /// Validity of the server and client certificates in days (the CA lasts at least 10 years).
    #[arg(long, default_value_t = minitls::pki::DEFAULT_LEAF_DAYS)]
    pub days: u32,

    /// A name of the server certificate: DNS:host, IP:address or a bare host or address;
    /// repeat for several [default: DNS:localhost, IP:127.0.0.1, IP:::1].
    #[arg(long = "server-name", value_name = "NAME")]
    pub server_names: Vec<String>,

    /// Common name of the client certificate.
    #[arg(long, value_name = "NAME", default_value = minitls::pki::DEFAULT_CLIENT_NAME)]
    pub client_name: String,
}

#[derive(Debug, Args)]
pub struct CaIssueArgs {
    /// Whether the certificate is for a server or a client.
    #[arg(long, value_enum)]
    pub role: RoleArg,

    /// Common name of the certificate; for a server without --san also its DNS (or IP) name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Directory holding ca.crt and ca.key; the new <role>.crt and <role>.key go there too.
    #[arg(long, default_value = "ca", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,

    /// A subject alternative name, DNS:host or IP:address; repeat for several.
    #[arg(long = "san", value_name = "DNS:host|IP:addr")]
    pub sans: Vec<String>,

    /// Validity in days (capped at the CA's own).
    #[arg(long, default_value_t = minitls::pki::DEFAULT_LEAF_DAYS)]
    pub days: u32,

    /// Replace existing certificate and key files.
    #[arg(long)]
    pub force: bool,

    /// RSA key size in bits: 2048, 3072 or 4096.
    #[arg(long, default_value_t = minitls::pki::DEFAULT_KEY_BITS)]
    pub key_bits: usize,

    /// Write the certificate here instead of DIR/<role>.crt (with --out-key), e.g. alice.crt.
    #[arg(long, value_name = "FILE", requires = "out_key", value_hint = ValueHint::FilePath)]
    pub out_cert: Option<PathBuf>,

    /// Write the private key (PKCS#8, mode 0600) here instead of DIR/<role>.key.
    #[arg(long, value_name = "FILE", requires = "out_cert", value_hint = ValueHint::FilePath)]
    pub out_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CaShowArgs {
    /// Certificate files, PEM (bundles and chain files too) or DER [default: ca.crt,
    /// server.crt and client.crt in --dir, those that exist].
    #[arg(value_name = "CERT_FILE", value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,

    /// CA directory to show when no files are named; its revocations give the status
    /// `revoked`.
    #[arg(long, default_value = "ca", value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,

    /// One JSON object per certificate and line: file, index, subject, issuer, serial,
    /// not_before, not_after, days_left, status, names, sha256.
    #[arg(long)]
    pub json: bool,
}

/// Where our certificate, key and the CA certificate come from.
#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// CA directory with ca.crt and <role>.crt/.key; missing credentials are created there.
    #[arg(
        long,
        default_value = "ca",
        env = "MINITLS_CA_DIR",
        value_hint = ValueHint::DirPath
    )]
    pub ca_dir: PathBuf,

    /// Our certificate (PEM), instead of --ca-dir; needs --key and --ca-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "MINITLS_CERT",
        requires_all = ["key", "ca_cert"],
        value_hint = ValueHint::FilePath
    )]
    pub cert: Option<PathBuf>,

    /// Our private key (PEM, PKCS#8 or PKCS#1), instead of --ca-dir; needs --cert and --ca-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "MINITLS_KEY",
        requires_all = ["cert", "ca_cert"],
        value_hint = ValueHint::FilePath
    )]
    pub key: Option<PathBuf>,

    /// The CA certificate (PEM) the peer must chain to, instead of --ca-dir; needs --cert and --key.
    #[arg(
        long,
        value_name = "FILE",
        env = "MINITLS_CA_CERT",
        requires_all = ["cert", "key"],
        value_hint = ValueHint::FilePath
    )]
    pub ca_cert: Option<PathBuf>,

    /// Certificate revocation list (PEM or DER) signed by the CA: a peer certificate it names
    /// is refused; a PEM file may add the lists of intermediate CAs, each checked with its
    /// CA's key from the peer's chain [default: DIR/crl.pem of --ca-dir when it exists].
    #[arg(long, value_name = "FILE", env = "MINITLS_CRL", value_hint = ValueHint::FilePath)]
    pub crl: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory to serve; nothing outside it is ever sent.
    #[arg(
        value_name = "DIR",
        default_value = "server_public",
        env = "MINITLS_SERVE_DIR",
        value_hint = ValueHint::DirPath
    )]
    pub dir: PathBuf,

    /// Address to listen on (IP:PORT); port 0 picks a free port, printed once listening.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:4041",
        env = "MINITLS_LISTEN"
    )]
    pub listen: String,

    #[command(flatten)]
    pub creds: CredentialArgs,

    /// Access policy (TOML, see the README): which clients may read and write which subtrees.
    /// Without it every authenticated client reads everything and nobody writes. SIGHUP
    /// re-reads it.
    #[arg(long, value_name = "FILE", env = "MINITLS_POLICY", value_hint = ValueHint::FilePath)]
    pub policy: Option<PathBuf>,

    /// Audit log format on stderr: `text` (key=value) or `json` (one object per line with
    /// ts, peer, conn, client, serial, op, path, bytes, sha256, result, ms). With json, only
    /// the serving line and audit lines are printed.
    #[arg(long, value_enum, default_value = "text", env = "MINITLS_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Most authenticated clients served at once; one more is told the server is busy.
    /// Connections still in their handshake never take these places (see --max-handshakes).
    #[arg(
        long,
        value_name = "N",
        default_value_t = minitls::net::DEFAULT_MAX_CLIENTS,
        env = "MINITLS_MAX_CLIENTS",
        value_parser = clap::value_parser!(u32).range(1..=65_536).map(|n| n as usize)
    )]
    pub max_clients: usize,

    /// Largest file a client may upload with `push` (bytes, or with a K, M, G or T suffix,
    /// powers of 1024); a larger upload is refused before anything is written.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "4G",
        env = "MINITLS_MAX_UPLOAD_SIZE",
        value_parser = super::progress::parse_size
    )]
    pub max_upload_size: u64,

    /// Most handshakes in progress at once. When full, a new connection is still taken and
    /// the oldest handshake of the address holding the most is cut instead.
    #[arg(
        long,
        value_name = "N",
        default_value_t = minitls::net::DEFAULT_MAX_HANDSHAKES,
        env = "MINITLS_MAX_HANDSHAKES",
        value_parser = clap::value_parser!(u32).range(1..=65_536).map(|n| n as usize)
    )]
    pub max_handshakes: usize,

    /// Most handshakes in progress from one address (IPv6: one /64). When full, a new
    /// connection from it cuts that address's oldest handshake.
    #[arg(
        long,
        value_name = "N",
        default_value_t = minitls::net::DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        env = "MINITLS_MAX_HANDSHAKES_PER_SOURCE",
        value_parser = clap::value_parser!(u32).range(1..=65_536).map(|n| n as usize)
    )]
    pub max_handshakes_per_source: usize,

    /// Seconds a new connection has to send its whole first message (the ClientHello).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = minitls::net::DEFAULT_FIRST_FLIGHT_TIMEOUT.as_secs(),
        env = "MINITLS_FIRST_FLIGHT_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub first_flight_timeout: u64,

    /// Seconds a client has to complete the handshake.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = minitls::net::DEFAULT_HANDSHAKE_TIMEOUT.as_secs(),
        env = "MINITLS_HANDSHAKE_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub handshake_timeout: u64,

    /// Seconds a connection may sit without progress before it is closed.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = minitls::net::DEFAULT_IDLE_TIMEOUT.as_secs(),
        env = "MINITLS_IDLE_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub idle_timeout: u64,

    /// The longest any connection may last, keep-alives or not: an older one is ended and its
    /// client told "session time limit reached". Seconds, or with s, m, h or d (90m, 8h).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "8h",
        env = "MINITLS_MAX_SESSION",
        value_parser = parse_duration
    )]
    pub max_session: std::time::Duration,

    /// Take operator commands on this Unix socket (made with mode 0600; only this user may
    /// use it): `minitls admin clients|drop ID|say ID TEXT|stop --control SOCKET`. On a
    /// terminal the same commands are read from standard input.
    #[arg(
        long,
        value_name = "SOCKET",
        env = "MINITLS_CONTROL",
        value_hint = ValueHint::FilePath
    )]
    pub control: Option<PathBuf>,
}

/// `90`, `90s`, `30m`, `8h`, `2d`: at least one second, at most a year.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "'{text}': use seconds, or a number with s, m, h or d (8h)"
            ));
        }
    };
    let secs = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| (1..=366 * 86_400).contains(s))
        .ok_or_else(|| format!("'{text}': give a duration from 1s to 366d, e.g. 8h"))?;
    Ok(std::time::Duration::from_secs(secs))
}

/// Which server to talk to.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Server address, HOST[:PORT] (port 4041 if none; IPv6 in brackets, [::1]:4041).
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        default_value = "127.0.0.1:4041",
        env = "MINITLS_SERVER",
        value_parser = parse_server_addr
    )]
    pub server: String,

    /// Name the server certificate must carry (a DNS or IP name in it) [default: the HOST of
    /// --server, as curl and ssh do].
    #[arg(long, value_name = "NAME", env = "MINITLS_SERVER_NAME")]
    pub server_name: Option<String>,

    /// Session tickets are kept in FILE (mode 0600), so that the next connection to the same
    /// server resumes in one round trip without RSA [default: $XDG_CACHE_HOME/minitls/sessions,
    /// else ~/.cache/minitls/sessions].
    #[arg(long, value_name = "FILE", env = "MINITLS_SESSION_CACHE")]
    pub session_cache: Option<PathBuf>,

    /// Keep no session tickets: every connection makes a full handshake.
    #[arg(long, conflicts_with = "session_cache")]
    pub no_session_cache: bool,
}

impl ServerArgs {
    /// Where session tickets are kept, unless `--no-session-cache`.
    pub fn session_cache(&self) -> Option<minitls::session_cache::SessionCache> {
        if self.no_session_cache {
            return None;
        }
        self.session_cache
            .clone()
            .or_else(minitls::session_cache::SessionCache::default_path)
            .map(minitls::session_cache::SessionCache::new)
    }

    /// The name the server's certificate must carry: `--server-name`, or the host of `--server`.
    pub fn expected_name(&self) -> String {
        self.server_name
            .clone()
            .unwrap_or_else(|| split_host_port(&self.server).0)
    }
}

/// The port `--server` gets when it names none.
pub const DEFAULT_PORT: u16 = 4041;

/// Splits HOST[:PORT] (`[v6]:port`, `[v6]`, `host`, `host:port`); the host without brackets.
pub fn split_host_port(addr: &str) -> (String, Option<&str>) {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host.to_string(), tail.strip_prefix(':'));
        }
        return (rest.to_string(), None);
    }
    match addr.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address, no port.
        Some((host, _)) if host.contains(':') => (addr.to_string(), None),
        Some((host, port)) => (host.to_string(), Some(port)),
        None => (addr.to_string(), None),
    }
}

/// Normalises `--server` to HOST:PORT (the port defaulting to 4041).
pub fn parse_server_addr(addr: &str) -> Result<String, String> {
    let (host, port) = split_host_port(addr);
    if host.is_empty() {
        return Err("give a host, e.g. files.example.org or 127.0.0.1:4041".into());
    }
    let port: u16 = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse()
            .map_err(|_| format!("'{p}' is not a port number (1-65535)"))?,
    };
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Paths of files on the server, relative to the served directory (a/b.txt is written as
    /// OUT/b.txt). Several go over one connection, their requests sent together, so N small
    /// files cost the round trips of one.
    #[arg(value_name = "PATH", required = true, num_args = 1..)]
    pub paths: Vec<String>,

    /// Fetch a directory and everything under it (a/d is written as OUT/d/...); one signed
    /// manifest, kept as OUT/d.minitls-manifest, covers the whole tree. `.` is the served
    /// directory itself (what the policy lets you read), written as OUT/SERVER/... where
    /// SERVER is the name its certificate was checked for (as wget -r names a site's copy).
    #[arg(short, long)]
    pub recursive: bool,

    /// Continue an interrupted fetch from its hidden partial file (OUT/.NAME.minitls-partial),
    /// or with -r from the partial tree a cut left there and the tree already in place (files
    /// held whole are not sent again); the whole file or tree is still verified. Without it, a
    /// partial is replaced.
    #[arg(long)]
    pub resume: bool,

    #[command(flatten)]
    pub server: ServerArgs,

    /// Directory to write into (created if missing); the signature is kept beside each file.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "client_received",
        value_hint = ValueHint::DirPath
    )]
    pub out: PathBuf,

    /// Write the file under this name instead (its signature beside it as FILE.minitls-sig);
    /// `-` writes its bytes to stdout once the signature verified, and keeps no signature.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with_all = ["recursive", "out"],
        value_hint = ValueHint::FilePath
    )]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub creds: CredentialArgs,

    /// Print one JSON object per fetched PATH on stdout instead of its local path (keys in
    /// the README: remote, type, path, bytes, network_bytes, ms, ...).
    #[arg(long)]
    pub json: bool,

    /// Receive at most RATE bytes per second, as curl's --limit-rate: 500K, 2M, 1G (powers
    /// of 1,024), at least 8K.
    #[arg(long, value_name = "RATE", value_parser = super::progress::parse_rate)]
    pub limit_rate: Option<u64>,

    /// When the connection is cut (or cannot be made: exit status 3), try again up to N
    /// times, waiting 1, 2, 4... s (at most 30 s) in between; a file or tree continues from
    /// what already arrived. With several PATHs, only the one that was cut and those not yet
    /// fetched are asked for again.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retry: u32,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Local files (with -r, directories too) to upload.
    #[arg(value_name = "LOCAL", required = true, value_hint = ValueHint::AnyPath)]
    pub local: Vec<PathBuf>,

    /// Upload directories and everything under them (LOCAL/d becomes REMOTE_DIR/d/...).
    #[arg(short, long)]
    pub recursive: bool,

    /// Directory on the server to upload into, relative to the served directory [default:
    /// the served directory itself]; made if missing (under a write grant).
    #[arg(long, value_name = "REMOTE_DIR", default_value = ".")]
    pub to: String,

    /// Replace files that already exist on the server (the write grant must cover them).
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub creds: CredentialArgs,
}

impl FetchArgs {
    /// The first (with one PATH, the only) path.
    pub fn path(&self) -> &str {
        &self.paths[0]
    }
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Directory or file on the server [default: the served directory].
    #[arg(value_name = "PATH")]
    pub path: Option<String>,

    /// List subdirectories too.
    #[arg(short, long)]
    pub recursive: bool,

    /// Print a JSON array of {"name", "type", "size", "mtime"} objects.
    #[arg(long)]
    pub json: bool,

    /// Exact sizes in bytes (the default when stdout is not a terminal, and with --json);
    /// on a terminal sizes are otherwise shown as 1.5 KiB, 96.0 MiB.
    #[arg(long)]
    pub bytes: bool,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub creds: CredentialArgs,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Run the commands in FILE (one per line; `#` starts a comment) instead of reading them
    /// interactively, stopping at the first that fails with its exit status. Standard input
    /// that is not a terminal is read the same way.
    #[arg(short, long, value_name = "BATCH_FILE", value_hint = ValueHint::FilePath)]
    pub batch: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub creds: CredentialArgs,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List the authenticated connections: id, client subject and serial, peer address,
    /// since, bytes each way, current operation.
    Clients(AdminClientsArgs),
    /// End connection ID; its client is told it was dropped by the operator.
    Drop(AdminDropArgs),
    /// Show TEXT in the shell on connection ID (at most 1024 bytes).
    Say(AdminSayArgs),
    /// Stop the server, as SIGTERM does.
    Stop(ControlArgs),
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The server's control socket (`serve --control SOCKET`).
    #[arg(
        long,
        value_name = "SOCKET",
        env = "MINITLS_CONTROL",
        value_hint = ValueHint::FilePath
    )]
    pub control: PathBuf,
}

#[derive(Debug, Args)]
pub struct AdminClientsArgs {
    /// One JSON object per line: id, client, serial, peer, since, bytes_in, bytes_out, op
    /// (null when idle), shell.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct AdminDropArgs {
    /// The connection id (`admin clients` lists them; the audit log's conn=).
    #[arg(value_name = "CONN_ID")]
    pub id: u64,

    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct AdminSayArgs {
    /// The connection id of a shell.
    #[arg(value_name = "CONN_ID")]
    pub id: u64,

    /// The message (several words are joined with spaces).
    #[arg(value_name = "TEXT", required = true, num_args = 1..)]
    pub text: Vec<String>,

    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Received files, each with its FILE.minitls-sig beside it (or inside a tree fetched with
    /// -r), and tree roots, checked whole against their DIR.minitls-manifest: every missing,
    /// altered and extra entry is reported.
    #[arg(value_name = "FILE", required = true, value_hint = ValueHint::AnyPath)]
    pub files: Vec<PathBuf>,

    /// CA directory whose ca.crt the signer must chain to (nothing is created).
    #[arg(
        long,
        default_value = "ca",
        env = "MINITLS_CA_DIR",
        value_hint = ValueHint::DirPath
    )]
    pub ca_dir: PathBuf,

    /// The CA certificate (PEM) the signer must chain to, instead of --ca-dir.
    #[arg(
        long,
        value_name = "FILE",
        env = "MINITLS_CA_CERT",
        value_hint = ValueHint::FilePath
    )]
    pub ca_cert: Option<PathBuf>,

    /// One JSON object per FILE on stdout (keys in the README: path, type, ok, error, and for
    /// a tree missing, altered, extra).
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod server_addr_tests {
    use super::*;

    #[test]
    fn server_addresses_get_the_default_port_and_give_their_host_as_the_name() {
        for (given, addr, host) in [
            ("vm", "vm:4041", "vm"),
            ("vm:4060", "vm:4060", "vm"),
            ("127.0.0.1", "127.0.0.1:4041", "127.0.0.1"),
            ("[::1]:5000", "[::1]:5000", "::1"),
            ("[::1]", "[::1]:4041", "::1"),
            ("::1", "[::1]:4041", "::1"),
        ] {
            let a = parse_server_addr(given).unwrap();
            assert_eq!(a, addr, "{given}");
            assert_eq!(split_host_port(&a).0, host, "{given}");
        }
        assert!(parse_server_addr("vm:http").is_err());
        assert!(parse_server_addr(":4041").is_err());
        let mut a = ServerArgs {
            server: parse_server_addr("vm:4060").unwrap(),
            server_name: None,
            session_cache: None,
            no_session_cache: true,
        };
        assert_eq!(a.expected_name(), "vm");
        a.server_name = Some("files.example.org".into());
        assert_eq!(a.expected_name(), "files.example.org");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
