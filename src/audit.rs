//! The server's audit log: one line per request and per failed handshake (SPEC §1.3).
//!
//! The library produces [`AuditEvent`]s; [`AuditEvent::text`] and [`AuditEvent::json`] give
//! the two line formats of `serve --log-format text|json`. JSON lines carry exactly the keys
//! `ts`, `peer`, `conn`, `client`, `serial`, `op`, `path`, `bytes`, `sha256`, `result`, `ms`
//! (`client`, `serial`, `path` and `sha256` are `null` where there is none).

use std::net::SocketAddr;
use std::time::Duration;

use crate::transfer::server::RequestResult;

/// Who is on the other end of a connection, once the handshake authenticated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The certificate's subject, e.g. `CN=alice`.
    pub subject: String,
    /// Upper-case hex.
    pub serial: String,
}

/// One line of the audit log.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// Unix seconds.
    pub ts: i64,
    pub peer: SocketAddr,
    /// Connection id, counted from 1 since the server started.
    pub conn: u64,
    /// `None` before (or without) authentication.
    pub client: Option<Peer>,
    /// `get`, `list`, `put` or `handshake`.
    pub op: &'static str,
    pub path: Option<String>,
    pub bytes: u64,
    pub sha256: Option<[u8; 32]>,
    pub result: RequestResult,
    pub duration: Duration,
}

fn result_text(r: &RequestResult) -> String {
    match r {
        RequestResult::Ok => "ok".into(),
        RequestResult::Denied => "denied".into(),
        RequestResult::NotFound => "not-found".into(),
        RequestResult::Error(e) => format!("error: {e}"),
    }
}

/// A JSON string literal (RFC 8259): quotes, backslashes and control characters escaped.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            // Other controls, and DEL and the C1 range so that a terminal showing the JSON
            // cannot be driven by escape sequences in a name.
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for the text format: printable, on one line; quoted when it has spaces or quotes.
fn text_value(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    {
        return s.to_string();
    }
    json_string(s)
}

impl AuditEvent {
    fn sha_hex(&self) -> Option<String> {
        self.sha256.as_ref().map(|d| crate::sigfile::hex(d))
    }

    /// `ts=... peer=... conn=... client=... serial=... op=... path=... bytes=... sha256=...
    /// result=... ms=...` (time as ISO 8601 UTC; `-` for what there is none of).
    pub fn text(&self) -> String {
        let dash = || "-".to_string();
        format!(
            "{} peer={} conn={} client={} serial={} op={} path={} bytes={} sha256={} result={} ms={}",
            crate::pki::format_unix_iso(self.ts),
            self.peer,
            self.conn,
            self.client
                .as_ref()
                .map_or_else(dash, |c| text_value(&c.subject)),
            self.client
                .as_ref()
                .map_or_else(dash, |c| text_value(&c.serial)),
            self.op,
            self.path.as_deref().map_or_else(dash, text_value),
            self.bytes,
            self.sha_hex().unwrap_or_else(dash),
            text_value(&result_text(&self.result)),
            self.duration.as_millis(),
        )
    }

    /// One JSON object with the keys of SPEC §1.3.
    pub fn json(&self) -> String {
        let opt = |v: Option<String>| v.map_or_else(|| "null".to_string(), |s| json_string(&s));
        format!(
            "{{\"ts\":{},\"peer\":{},\"conn\":{},\"client\":{},\"serial\":{},\"op\":{},\"path\":{},\"bytes\":{},\"sha256\":{},\"result\":{},\"ms\":{}}}",
            json_string(&crate::pki::format_unix_iso(self.ts)),
            json_string(&self.peer.to_string()),
            self.conn,
            opt(self.client.as_ref().map(|c| c.subject.clone())),
            opt(self.client.as_ref().map(|c| c.serial.clone())),
            json_string(self.op),
            opt(self.path.clone()),
            self.bytes,
            opt(self.sha_hex()),
            json_string(&result_text(&self.result)),
            self.duration.as_millis(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            ts: 1_800_000_000,
            peer: "127.0.0.1:5000".parse().unwrap(),
            conn: 7,
            client: Some(Peer {
                subject: "CN=alice".into(),
                serial: "3F2A".into(),
            }),
            op: "get",
            path: Some("a \"b\"\n.txt".into()),
            bytes: 10,
            sha256: Some([0xab; 32]),
            result: RequestResult::Ok,
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn json_lines_have_exactly_the_spec_keys_and_escape_what_a_peer_chose() {
        let j = event().json();
        for key in [
            "ts", "peer", "conn", "client", "serial", "op", "path", "bytes", "sha256", "result",
            "ms",
        ] {
            assert!(j.contains(&format!("\"{key}\":")), "{key}: {j}");
        }
        assert!(!j.contains('\n'));
        assert!(j.contains(r#""path":"a \"b\"\n.txt""#), "{j}");
        let mut h = event();
        h.op = "handshake";
        h.client = None;
        h.path = None;
        h.sha256 = None;
        h.result = RequestResult::Error("certificate expired".into());
        let j = h.json();
        assert!(
            j.contains(r#""client":null"#)
                && j.contains(r#""result":"error: certificate expired""#),
            "{j}"
        );
    }

    #[test]
    fn text_lines_stay_on_one_line() {
        let t = event().text();
        assert!(
            t.starts_with("2027-01-15T08:00:00Z peer=127.0.0.1:5000 conn=7 client=CN=alice"),
            "{t}"
        );
        assert!(!t.contains('\n') && t.contains("result=ok ms=3"), "{t}");
    }
}
