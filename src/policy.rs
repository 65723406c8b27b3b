//! Who may read and write what: the access policy of `serve --policy FILE` (SPEC §1.2).
//!
//! ```toml
//! [[grant]]
//! clients = ["alice", "serial:3F2A...", "sha256:AB12..."]  # CN, serial, fingerprint; "*" = any
//! read  = ["projects", "shared/docs"]   # subtrees of the served directory ("." = all of it)
//! write = ["uploads/alice"]             # subtrees that `push` may create files in
//! ```
//!
//! A client's rights are the union of every grant that names it. Decisions use only the
//! certificate the handshake authenticated ([`ClientId::from_der`]), and paths in their
//! normalised form (split by [`crate::paths::parse_relative`]), so `a/./b`, `a//b` or `a/../b`
//! never reach a decision. Without a policy every client may read everything and nobody may
//! write ([`Access::default_read_all`]).
//!
//! Reading is by subtree: a grant of `shared/docs` lets the client fetch and list anything in
//! it. The directories on the way (`shared`) are *visible*: they are listed, and listing them
//! shows only the entries that lead to something readable, so a client can find its way to
//! what it may read and learns nothing else.

use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::paths;

/// Why a policy file was refused.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("grant {grant}: {what}")]
    Grant { grant: usize, what: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    clients: Vec<String>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

/// How a grant names a client.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    Any,
    CommonName(String),
    /// Upper-case hex without separators or leading zero bytes' worth of difference: compared
    /// after the same normalisation as the certificate's.
    Serial(String),
    Sha256([u8; 32]),
}

/// A subtree of the served directory, as components; empty = the whole directory.
type Subtree = Vec<String>;

#[derive(Clone, Debug)]
struct Grant {
    clients: Vec<Matcher>,
    read: Vec<Subtree>,
    write: Vec<Subtree>,
}

/// A parsed policy.
#[derive(Clone, Debug)]
pub struct Policy {
    grants: Vec<Grant>,
}

/// The identity of an authenticated client, as a policy names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientId {
    pub common_name: String,
    /// Upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub sha256: [u8; 32],
}

impl ClientId {
    /// From the DER certificate the handshake verified.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let s = crate::pki::summarize_certificate_der(der).ok()?;
        Some(Self {
            common_name: s.common_name,
            serial: s.serial,
            sha256: s.sha256,
        })
    }
}

/// Normalises a serial as written by a person: `3f:2a:...`, `0x3F2A`, leading zeros.
fn normalise_serial(s: &str) -> Option<String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_ascii_uppercase())
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_matcher(s: &str) -> Result<Matcher, String> {
    if s == "*" {
        return Ok(Matcher::Any);
    }
    if let Some(rest) = s.strip_prefix("serial:") {
        return normalise_serial(rest)
            .map(Matcher::Serial)
            .ok_or_else(|| format!("'{s}': a serial is hex digits (colons allowed)"));
    }
    if let Some(rest) = s.strip_prefix("sha256:") {
        return parse_hex32(rest)
            .map(Matcher::Sha256)
            .ok_or_else(|| format!("'{s}': a fingerprint is 64 hex digits (colons allowed)"));
    }
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(format!("{s:?} is not a client name"));
    }
    Ok(Matcher::CommonName(s.to_string()))
}

fn parse_subtree(s: &str) -> Result<Subtree, String> {
    paths::parse_relative(s, true)
        .map(|parts| parts.into_iter().map(str::to_string).collect())
        .map_err(|e| format!("'{s}' is not a subtree of the served directory: {e}"))
}

impl Policy {
    /// Parses policy text (TOML, SPEC §1.2).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let file: File = toml::from_str(text).map_err(|e| {
            // toml's message spans lines (a caret under the source); keep the position and
            // the reason.
            let msg = e.to_string();
            let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or("").to_string();
            let last = msg
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty() && !l.contains('|'));
            PolicyError::Syntax(match last {
                Some(l) if l != first => format!("{first}: {l}"),
                _ => first,
            })
        })?;
        let mut grants = Vec::with_capacity(file.grant.len());
        for (i, g) in file.grant.into_iter().enumerate() {
            let n = i + 1;
            let err = |what: String| PolicyError::Grant { grant: n, what };
            if g.clients.is_empty() {
                return Err(err("names no clients".into()));
            }
            let clients = g
                .clients
                .iter()
                .map(|c| parse_matcher(c))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            let read = g
                .read
                .iter()
                .map(|p| parse_subtree(p))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            let write = g
                .write
                .iter()
                .map(|p| parse_subtree(p))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            grants.push(Grant {
                clients,
                read,
                write,
            });
        }
        Ok(Self { grants })
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Number of grants (for the log).
    pub fn grants(&self) -> usize {
        self.grants.len()
    }

    /// What `id` may do: the union of the grants that name it.
    pub fn access_for(&self, id: &ClientId) -> Access {
        let mut read = Vec::new();
        let mut write = Vec::new();
        for g in &self.grants {
            let named = g.clients.iter().any(|m| match m {
                Matcher::Any => true,
                Matcher::CommonName(n) => *n == id.common_name,
                Matcher::Serial(s) => normalise_serial(&id.serial).as_deref() == Some(s),
                Matcher::Sha256(f) => *f == id.sha256,
            });
            if named {
                read.extend(g.read.iter().cloned());
                write.extend(g.write.iter().cloned());
            }
        }
        Access { read, write }
    }
}

/// One client's rights, fixed for its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    read: Vec<Subtree>,
    write: Vec<Subtree>,
}

fn within(path: &[&str], tree: &Subtree) -> bool {
    path.len() >= tree.len() && path.iter().zip(tree).all(|(a, b)| a == b)
}

impl Access {
    /// No policy: every authenticated client reads everything and writes nothing.
    pub fn default_read_all() -> Self {
        Self {
            read: vec![Vec::new()],
            write: Vec::new(),
        }
    }

    /// Nothing at all.
    pub fn none() -> Self {
        Self {
            read: Vec::new(),
            write: Vec::new(),
        }
    }

    /// May the client read `path` (normalised, relative to the served root; "" = the root)?
    pub fn can_read(&self, path: &str) -> bool {
        let parts = split(path);
        self.read.iter().any(|t| within(&parts, t))
    }

    /// May the client see `path` in a listing: readable, or a directory on the way to
    /// something readable?
    pub fn can_see(&self, path: &str) -> bool {
        let parts = split(path);
        self.read
            .iter()
            .any(|t| within(&parts, t) || is_prefix_of(&parts, t))
    }

    /// May the client create files at `path`?
    pub fn can_write(&self, path: &str) -> bool {
        let parts = split(path);
        self.write.iter().any(|t| within(&parts, t))
    }
}

fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// Is `prefix` a directory on the way to the subtree `t`?
fn is_prefix_of(prefix: &[&str], t: &[String]) -> bool {
    prefix.len() <= t.len() && prefix.iter().zip(t).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(cn: &str) -> ClientId {
        ClientId {
            common_name: cn.into(),
            serial: "01".into(),
            sha256: [0xAB; 32],
        }
    }

    const POLICY: &str = r#"
        [[grant]]
        clients = ["alice"]
        read = ["projects", "shared/docs"]
        write = ["uploads/alice"]

        [[grant]]
        clients = ["bob", "serial:3f:2a:0"]
        read = ["bob"]

        [[grant]]
        clients = ["*"]
        read = ["public"]
    "#;

    #[test]
    fn grants_name_clients_by_common_name_serial_fingerprint_or_any() {
        let p = Policy::parse(POLICY).unwrap();
        let alice = p.access_for(&id("alice"));
        assert!(alice.can_read("projects/x/y.txt") && alice.can_read("projects"));
        assert!(alice.can_read("shared/docs/a") && !alice.can_read("shared/other"));
        assert!(alice.can_read("public/readme") && !alice.can_read("bob/secret"));
        assert!(alice.can_write("uploads/alice/f") && !alice.can_write("uploads/bob/f"));
        // Serial 03F2A0 matches "3f:2a:0" after normalisation: anyone with it reads bob/.
        let mut mallory = id("mallory");
        mallory.serial = "03F2A0".into();
        assert!(p.access_for(&mallory).can_read("bob/x"));
        let other = id("eve");
        let eve = p.access_for(&other);
        assert!(!eve.can_read("bob/x") && eve.can_read("public/x"));
        assert!(!eve.can_read("") && !eve.can_write("public/x"));
        let fp = Policy::parse(&format!(
            "[[grant]]\nclients = [\"sha256:{}\"]\nread = [\".\"]",
            "ab".repeat(32)
        ))
        .unwrap();
        assert!(fp.access_for(&other).can_read("anything"));
    }

    #[test]
    fn the_way_to_a_readable_subtree_is_visible_and_nothing_beside_it() {
        let alice = Policy::parse(POLICY).unwrap().access_for(&id("alice"));
        assert!(alice.can_see("") && alice.can_see("shared") && alice.can_see("shared/docs/x"));
        assert!(!alice.can_see("shared/other") && !alice.can_see("bob"));
        assert!(!alice.can_read("shared") && !alice.can_read(""));
    }

    #[test]
    fn a_subtree_is_whole_components_never_a_name_prefix() {
        let p = Policy::parse("[[grant]]\nclients=[\"a\"]\nread=[\"pro\"]").unwrap();
        let a = p.access_for(&id("a"));
        assert!(a.can_read("pro/x") && !a.can_read("projects/x") && !a.can_see("projects"));
    }

    #[test]
    fn bad_policies_are_refused_with_the_grant_and_the_reason() {
        for (text, want) in [
            ("[[grant]]\nclients=[\"a\"]\nraed=[\"x\"]", "raed"),
            (
                "[[grant]]\nclients=[]\nread=[\"x\"]",
                "grant 1: names no clients",
            ),
            (
                "[[grant]]\nclients=[\"a\"]\nread=[\"../etc\"]",
                "grant 1: '../etc'",
            ),
            ("[[grant]]\nclients=[\"a\"]\nread=[\"/etc\"]", "absolute"),
            ("[[grant]]\nclients=[\"serial:xyz\"]", "serial"),
            ("[[grant]]\nclients=[\"sha256:12\"]", "64 hex"),
            ("grant = 3", ""),
        ] {
            let e = Policy::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // No grants at all: a valid policy that allows nothing.
        let none = Policy::parse("").unwrap().access_for(&id("a"));
        assert_eq!(none, Access::none());
        assert!(!none.can_see(""));
    }

    #[test]
    fn without_a_policy_everyone_reads_all_and_nobody_writes() {
        let a = Access::default_read_all();
        assert!(a.can_read("") && a.can_read("x/y") && a.can_see("x"));
        assert!(!a.can_write("x"));
    }
}
