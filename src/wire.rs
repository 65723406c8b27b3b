//! Bytes <-> messages: frames, handshake and application messages. No crypto, no I/O.
//!
//! Every message implements [`Codec`]: `encode` appends to a `Vec<u8>`, `read` takes a
//! bounds-checked [`Reader`]. Every length prefix has a named maximum that is checked before
//! anything is allocated, and [`Codec::decode`] rejects trailing bytes.

use thiserror::Error;

/// Version number carried in the hellos. Bumped for any incompatible change of this file.
pub const PROTOCOL_VERSION: u16 = 3;

/// A frame is `type: u8 | length: u32 (big endian) | body`.
pub const FRAME_HEADER_LEN: usize = 5;

/// Largest certificate (DER) accepted from a peer.
pub const MAX_CERT_LEN: usize = 16 * 1024;
/// Largest RSA ciphertext or signature accepted (8192-bit keys).
pub const MAX_RSA_BLOB_LEN: usize = 1024;
/// Most intermediate CA certificates sent after a leaf (SPEC §2.9).
pub const MAX_CHAIN_LEN: usize = 3;
/// Largest plaintext handshake frame body of the messages without a certificate chain.
pub const MAX_HANDSHAKE_BODY: usize = MAX_CERT_LEN + 2 * MAX_RSA_BLOB_LEN + 64;
/// Largest body of the two frames that carry a certificate chain (ServerHello,
/// ClientCertificate): a leaf and `MAX_CHAIN_LEN` intermediates of `MAX_CERT_LEN` each, with
/// their length prefixes. Only these two may be this large, so a first flight (ClientHello,
/// or ResumeHello) still costs a server at most `MAX_HANDSHAKE_BODY`.
pub const MAX_CHAIN_MSG_BODY: usize =
    (1 + MAX_CHAIN_LEN) * (MAX_CERT_LEN + 2) + 2 * MAX_RSA_BLOB_LEN + 64;
/// The ResumeHello's bytes besides its ticket: version, random, key share, client
/// fingerprint, ticket length, binder.
pub const RESUME_HELLO_FIXED: usize = 2 + 32 + 32 + 32 + 2 + 32;
/// Largest session ticket (nonce, encrypted contents with the client's chain, tag): what keeps
/// a ResumeHello, a first flight like the ClientHello, within `MAX_HANDSHAKE_BODY`. A client
/// whose certificates would make a larger ticket (over about 18 KB of chain) gets none and
/// makes full handshakes.
pub const MAX_TICKET_LEN: usize = MAX_HANDSHAKE_BODY - RESUME_HELLO_FIXED;
/// Largest application payload carried by one record.
pub const MAX_RECORD_PAYLOAD: usize = 256 * 1024;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Largest encrypted record body: inner type byte + payload + tag.
pub const MAX_RECORD_BODY: usize = 1 + MAX_RECORD_PAYLOAD + TAG_LEN;
/// Longest path in a request or a file statement, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest human-readable error text a peer may send.
pub const MAX_ERROR_TEXT: usize = 1024;
/// Most entries in one listing message.
pub const MAX_LIST_ENTRIES_PER_MSG: usize = 1024;
/// Longest message a person may send the other end (`say`), in bytes of UTF-8. Both ends
/// refuse a longer one before it is sent; the codec refuses it on arrival.
pub const MAX_SAY_LEN: usize = 1024;

/// Frame types. Handshake messages travel in the clear, each in its own frame; after the
/// handshake everything is a [`FrameType::Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    ClientHello = 1,
    ServerHello = 2,
    ClientCertificate = 3,
    ClientCertificateVerify = 4,
    ClientFinished = 5,
    ServerCertificateVerify = 6,
    ServerFinished = 7,
    /// A returning client's first flight: a ClientHello with a session ticket (version 3).
    ResumeHello = 8,
    /// The server's answer to an accepted ResumeHello (then its Finished).
    ServerResume = 9,
    Alert = 0x15,
    Record = 0x17,
    /// A record a returning client sends with its ResumeHello, before its Finished, under
    /// keys of the ticket's secret alone (read requests only).
    EarlyRecord = 0x18,
}

impl FrameType {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::ClientHello,
            2 => Self::ServerHello,
            3 => Self::ClientCertificate,
            4 => Self::ClientCertificateVerify,
            5 => Self::ClientFinished,
            6 => Self::ServerCertificateVerify,
            7 => Self::ServerFinished,
            8 => Self::ResumeHello,
            9 => Self::ServerResume,
            0x15 => Self::Alert,
            0x17 => Self::Record,
            0x18 => Self::EarlyRecord,
            _ => return None,
        })
    }

    /// The largest body a frame of this type may declare: checked before allocating.
    pub fn max_body(self) -> usize {
        match self {
            Self::Record | Self::EarlyRecord => MAX_RECORD_BODY,
            Self::Alert => 1,
            Self::ServerHello | Self::ClientCertificate => MAX_CHAIN_MSG_BODY,
            _ => MAX_HANDSHAKE_BODY,
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub typ: FrameType,
    pub len: usize,
}

impl FrameHeader {
    /// Parses and bounds-checks a header. Unknown types and oversized lengths are errors.
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Result<Self, DecodeError> {
        let typ = FrameType::from_u8(bytes[0]).ok_or(DecodeError::UnknownType(bytes[0]))?;
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if len > typ.max_body() {
            return Err(DecodeError::TooLong {
                what: "frame",
                len,
                max: typ.max_body(),
            });
        }
        Ok(Self { typ, len })
    }

    pub fn encode(typ: FrameType, len: usize) -> [u8; FRAME_HEADER_LEN] {
        debug_assert!(len <= typ.max_body());
        let l = (len as u32).to_be_bytes();
        [typ as u8, l[0], l[1], l[2], l[3]]
    }
}

/// Encodes a whole frame (header + body).
pub fn encode_frame(typ: FrameType, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&FrameHeader::encode(typ, body.len()));
    out.extend_from_slice(body);
    out
}

/// What can be wrong with bytes from the peer. Deliberately carries no secrets.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message ended early while reading {0}")]
    Truncated(&'static str),
    #[error("{what} is {len} bytes, more than the maximum {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
}

/// A bounds-checked cursor over received bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(self.u64(what)? as i64)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// A `u16` length prefix followed by that many bytes, at most `max`.
    pub fn vec_u16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(what)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.take(len, what)
    }

    /// A `u16`-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let b = self.vec_u16(max, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidValue(what))
    }

    pub fn expect_end(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Writers for the same encodings.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
/// `u16` length prefix + bytes. Callers only pass values bounded by a named maximum below
/// 65536; a longer one is a bug in our own code, not in the peer's.
pub fn put_vec_u16(out: &mut Vec<u8>, v: &[u8]) {
    let len = u16::try_from(v.len()).expect("our own fields are bounded below 64 KiB");
    put_u16(out, len);
    out.extend_from_slice(v);
}

/// One codec for every message.
pub trait Codec: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes a complete body; trailing bytes are an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.expect_end()?;
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake messages
// ---------------------------------------------------------------------------------------------

/// Flight 1, client -> server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    pub version: u16,
    pub random: [u8; 32],
    pub x25519: [u8; 32],
}

impl Codec for ClientHello {
    fn encode(&self, out: &mut Vec<u8>) {
        put_hello(out, self.version, &self.random, &self.x25519);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (version, random, x25519) = read_hello(r, "client random", "client key share")?;
        Ok(Self {
            version,
            random,
            x25519,
        })
    }
}

/// `version u16 | random [32] | x25519 [32]`: how ClientHello, ServerHello, ResumeHello and
/// ServerResume begin.
fn put_hello(out: &mut Vec<u8>, version: u16, random: &[u8; 32], x25519: &[u8; 32]) {
    put_u16(out, version);
    out.extend_from_slice(random);
    out.extend_from_slice(x25519);
}

fn read_hello(
    r: &mut Reader<'_>,
    random_name: &'static str,
    share_name: &'static str,
) -> Result<(u16, [u8; 32], [u8; 32]), DecodeError> {
    Ok((
        r.u16("version")?,
        r.array(random_name)?,
        r.array(share_name)?,
    ))
}

/// Flight 2, server -> client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    pub version: u16,
    pub random: [u8; 32],
    pub x25519: [u8; 32],
    pub certificate: Vec<u8>,
    /// Intermediate CA certificates after the server's, issuer first (at most
    /// `MAX_CHAIN_LEN`).
    pub chain: Vec<Vec<u8>>,
}

impl Codec for ServerHello {
    fn encode(&self, out: &mut Vec<u8>) {
        put_hello(out, self.version, &self.random, &self.x25519);
        put_vec_u16(out, &self.certificate);
        put_chain(out, &self.chain);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (version, random, x25519) = read_hello(r, "server random", "server key share")?;
        Ok(Self {
            version,
            random,
            x25519,
            certificate: r.vec_u16(MAX_CERT_LEN, "server certificate")?.to_vec(),
            chain: read_chain(r, "server certificate chain")?,
        })
    }
}

/// `count u8 (<= MAX_CHAIN_LEN) | count x vec16<DER>`: the count is checked before anything is
/// read or allocated, and each certificate against `MAX_CERT_LEN`.
fn put_chain(out: &mut Vec<u8>, chain: &[Vec<u8>]) {
    // Encoders are only given chains loaded through `pki`, which caps them at 3; a longer one
    // is cut here rather than sent with a count byte that lies.
    let count = chain.len().min(MAX_CHAIN_LEN);
    out.push(count as u8);
    for cert in &chain[..count] {
        put_vec_u16(out, cert);
    }
}

fn read_chain(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<Vec<u8>>, DecodeError> {
    let count = r.u8(what)? as usize;
    if count > MAX_CHAIN_LEN {
        return Err(DecodeError::InvalidValue(what));
    }
    let mut chain = Vec::with_capacity(count);
    for _ in 0..count {
        chain.push(r.vec_u16(MAX_CERT_LEN, what)?.to_vec());
    }
    Ok(chain)
}

/// A returning client's first flight (session resumption, PROTOCOL.md §2.5). `binder` is
/// an HMAC, under a key of the ticket's secret, over every byte of the frame before it
/// (header included), so only the holder of that secret can present the ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeHello {
    pub version: u16,
    pub random: [u8; 32],
    pub x25519: [u8; 32],
    /// SHA-256 of the certificate the client holds now: the ticket must have been issued to it.
    pub client_fingerprint: [u8; 32],
    /// Opaque to the client: the server's encrypted session state.
    pub ticket: Vec<u8>,
    pub binder: [u8; 32],
}

impl Codec for ResumeHello {
    fn encode(&self, out: &mut Vec<u8>) {
        put_hello(out, self.version, &self.random, &self.x25519);
        out.extend_from_slice(&self.client_fingerprint);
        put_vec_u16(out, &self.ticket);
        out.extend_from_slice(&self.binder);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (version, random, x25519) = read_hello(r, "client random", "client key share")?;
        Ok(Self {
            version,
            random,
            x25519,
            client_fingerprint: r.array("client fingerprint")?,
            ticket: r.vec_u16(MAX_TICKET_LEN, "ticket")?.to_vec(),
            binder: r.array("binder")?,
        })
    }
}

/// The server's answer to an accepted ResumeHello: its fresh random and X25519 share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerResume {
    pub version: u16,
    pub random: [u8; 32],
    pub x25519: [u8; 32],
}

impl Codec for ServerResume {
    fn encode(&self, out: &mut Vec<u8>) {
        put_hello(out, self.version, &self.random, &self.x25519);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (version, random, x25519) = read_hello(r, "server random", "server key share")?;
        Ok(Self {
            version,
            random,
            x25519,
        })
    }
}

/// A session ticket for the client to present next time (AppType::NewTicket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTicket {
    /// Seconds the server will accept it for (it may accept it for less: certificates expire).
    pub lifetime_secs: u32,
    pub ticket: Vec<u8>,
}

impl Codec for NewTicket {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.lifetime_secs);
        put_vec_u16(out, &self.ticket);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            lifetime_secs: r.u32("ticket lifetime")?,
            ticket: r.vec_u16(MAX_TICKET_LEN, "ticket")?.to_vec(),
        })
    }
}

/// Flight 3a: the client's certificate and the secret wrapped to the server's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    pub certificate: Vec<u8>,
    /// Intermediate CA certificates after the client's, issuer first (at most
    /// `MAX_CHAIN_LEN`).
    pub chain: Vec<Vec<u8>>,
    pub wrapped_secret: Vec<u8>,
}

impl Codec for ClientCertificate {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, &self.certificate);
        put_chain(out, &self.chain);
        put_vec_u16(out, &self.wrapped_secret);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            certificate: r.vec_u16(MAX_CERT_LEN, "client certificate")?.to_vec(),
            chain: read_chain(r, "client certificate chain")?,
            wrapped_secret: r.vec_u16(MAX_RSA_BLOB_LEN, "wrapped secret")?.to_vec(),
        })
    }
}

/// A transcript signature (client flight 3b, server flight 4a).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateVerify {
    pub signature: Vec<u8>,
}

impl Codec for CertificateVerify {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, &self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            signature: r.vec_u16(MAX_RSA_BLOB_LEN, "signature")?.to_vec(),
        })
    }
}

/// Key confirmation MAC (client flight 3c, server flight 4b).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub mac: [u8; 32],
}

impl Codec for Finished {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mac);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            mac: r.array("finished")?,
        })
    }
}

/// Why a handshake was refused. Sent in the clear, so it says only what the peer may know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Alert {
    /// The peer's certificate failed validation.
    BadCertificate = 1,
    /// A signature, a Finished MAC or the key unwrap failed: deliberately one code for all.
    HandshakeFailure = 2,
    /// Malformed or unexpected message.
    ProtocolError = 3,
    UnsupportedVersion = 4,
    /// The server is at --max-clients.
    Busy = 5,
    /// A deadline passed.
    Timeout = 6,
    /// The peer's certificate is outside its validity period (expired or not yet valid).
    CertificateExpired = 7,
    /// The peer's certificate is on its CA's revocation list.
    CertificateRevoked = 8,
    /// The peer's certificate is not allowed for its role (extended key usage, key usage, or
    /// a CA certificate used as a leaf).
    CertificateWrongRole = 9,
    /// The peer's certificate was not issued by a CA this end trusts.
    UnknownCa = 10,
    /// The server's operator ended the connection (`drop`). Sent only inside the channel, in
    /// a [`AppMessage::Goodbye`].
    DroppedByOperator = 11,
    /// The connection reached the server's `--max-session` age. Sent only inside the channel,
    /// in a [`AppMessage::Goodbye`].
    SessionTimeLimit = 12,
}

impl Alert {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::BadCertificate,
            2 => Self::HandshakeFailure,
            3 => Self::ProtocolError,
            4 => Self::UnsupportedVersion,
            5 => Self::Busy,
            6 => Self::Timeout,
            7 => Self::CertificateExpired,
            8 => Self::CertificateRevoked,
            9 => Self::CertificateWrongRole,
            10 => Self::UnknownCa,
            11 => Self::DroppedByOperator,
            12 => Self::SessionTimeLimit,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadCertificate => "bad certificate",
            Self::HandshakeFailure => "handshake failure",
            Self::ProtocolError => "protocol error",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::Busy => "server busy (too many clients)",
            Self::Timeout => "timed out",
            Self::CertificateExpired => "certificate expired (or not yet valid)",
            Self::CertificateRevoked => "certificate revoked",
            Self::CertificateWrongRole => "certificate not allowed for this role",
            Self::UnknownCa => "certificate not issued by a trusted CA",
            Self::DroppedByOperator => "dropped by the operator",
            Self::SessionTimeLimit => "session time limit reached (the server's --max-session)",
        })
    }
}

impl Codec for Alert {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let b = r.u8("alert")?;
        Self::from_u8(b).ok_or(DecodeError::InvalidValue("alert"))
    }
}

// ---------------------------------------------------------------------------------------------
// Application messages (inside records). The first plaintext byte is the message type.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AppType {
    Request = 1,
    FileStart = 2,
    Data = 3,
    FileEnd = 4,
    Listing = 5,
    ListEnd = 6,
    Error = 7,
    /// Authenticated end of stream: without it, an EOF is a truncation.
    Close = 8,
    /// A directory transfer follows: counts for progress.
    TreeStart = 9,
    /// A directory inside the tree (sent before anything in it).
    TreeDir = 10,
    /// The end of one file of a tree: the server's digest of it.
    FileDone = 11,
    /// An entry the server did not send (symlink, unreadable, special file).
    Skipped = 12,
    /// The end of a tree: the signature over the manifest of everything sent.
    TreeEnd = 13,
    /// Client -> server: an upload of one file or directory follows (`push`).
    Put = 14,
    /// Server -> client: the upload may be sent.
    PutReady = 15,
    /// Server -> client: the upload is verified and in place.
    PutDone = 16,
    /// Client -> server: a line of text for the server's operator (`say`); answered by Pong.
    Say = 17,
    /// Client -> server: an interactive session is still there (keep-alive), and asks for
    /// the operator's messages waiting for it; answered by Notice... then Pong.
    Ping = 18,
    /// Server -> client: the answer to Ping or Say.
    Pong = 19,
    /// Server -> client: a line of text from the server's operator (`say ID TEXT`), sent only
    /// before a Pong.
    Notice = 20,
    /// Server -> client: the server ends the connection, and why (an [`Alert`] code). Nothing
    /// follows it.
    Goodbye = 21,
    /// Client -> server, before a recursive Get (`fetch -r --resume`): files of the tree the
    /// client already holds, whole or in part (version 3).
    TreeHave = 24,
    /// Server -> client, right after a handshake: a session ticket for the next connection.
    /// Read by the channel itself ([`NewTicket`]), never handed to the application.
    NewTicket = 27,
}

impl AppType {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Request,
            2 => Self::FileStart,
            3 => Self::Data,
            4 => Self::FileEnd,
            5 => Self::Listing,
            6 => Self::ListEnd,
            7 => Self::Error,
            8 => Self::Close,
            9 => Self::TreeStart,
            10 => Self::TreeDir,
            11 => Self::FileDone,
            12 => Self::Skipped,
            13 => Self::TreeEnd,
            14 => Self::Put,
            15 => Self::PutReady,
            16 => Self::PutDone,
            17 => Self::Say,
            18 => Self::Ping,
            19 => Self::Pong,
            20 => Self::Notice,
            21 => Self::Goodbye,
            24 => Self::TreeHave,
            27 => Self::NewTicket,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    Get = 1,
    List = 2,
}

/// Client -> server: what to fetch or list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestKind,
    pub recursive: bool,
    /// Byte offset to start sending data from (resume); the signature still covers the whole file.
    pub offset: u64,
    /// SHA-256 of the client's first `offset` bytes (zeros when `offset` is 0). The server
    /// resumes only if its file starts with the same bytes, and otherwise starts over at 0.
    pub prefix_sha256: [u8; 32],
    pub path: String,
}

impl Codec for Request {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.push(self.recursive as u8);
        put_u64(out, self.offset);
        out.extend_from_slice(&self.prefix_sha256);
        put_vec_u16(out, self.path.as_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = match r.u8("request kind")? {
            1 => RequestKind::Get,
            2 => RequestKind::List,
            _ => return Err(DecodeError::InvalidValue("request kind")),
        };
        let recursive = match r.u8("recursive flag")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::InvalidValue("recursive flag")),
        };
        Ok(Self {
            kind,
            recursive,
            offset: r.u64("offset")?,
            prefix_sha256: r.array("prefix digest")?,
            path: r.string(MAX_PATH_LEN, "path")?,
        })
    }
}

/// Server -> client: a file follows as Data messages, then FileEnd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStart {
    /// Path relative to the served root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub mtime: i64,
    /// Where the data starts (the request's offset, or 0 if the server restarts).
    pub offset: u64,
}

impl Codec for FileStart {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, self.path.as_bytes());
        put_u64(out, self.size);
        put_u64(out, self.mtime as u64);
        put_u64(out, self.offset);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            path: r.string(MAX_PATH_LEN, "path")?,
            size: r.u64("size")?,
            mtime: r.i64("mtime")?,
            offset: r.u64("offset")?,
        })
    }
}

/// What the server signs about a file: binds path, size and content digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStatement {
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// Unix seconds when the server signed; `verify` checks the certificate was valid then.
    pub signed_at: i64,
}

impl Codec for FileStatement {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, self.path.as_bytes());
        put_u64(out, self.size);
        out.extend_from_slice(&self.sha256);
        put_u64(out, self.signed_at as u64);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            path: r.string(MAX_PATH_LEN, "path")?,
            size: r.u64("size")?,
            sha256: r.array("digest")?,
            signed_at: r.i64("signing time")?,
        })
    }
}

/// Server -> client after the last Data message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEnd {
    pub statement: FileStatement,
    pub signature: Vec<u8>,
}

impl Codec for FileEnd {
    fn encode(&self, out: &mut Vec<u8>) {
        self.statement.encode(out);
        put_vec_u16(out, &self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            statement: FileStatement::read(r)?,
            signature: r.vec_u16(MAX_RSA_BLOB_LEN, "signature")?.to_vec(),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    File = 1,
    Dir = 2,
}

impl EntryKind {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("entry kind")? {
            1 => Ok(Self::File),
            2 => Ok(Self::Dir),
            _ => Err(DecodeError::InvalidValue("entry kind")),
        }
    }
}

/// One line of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: i64,
    pub path: String,
}

impl Codec for ListEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        put_u64(out, self.size);
        put_u64(out, self.mtime as u64);
        put_vec_u16(out, self.path.as_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = EntryKind::read(r)?;
        Ok(Self {
            kind,
            size: r.u64("size")?,
            mtime: r.i64("mtime")?,
            path: r.string(MAX_PATH_LEN, "path")?,
        })
    }
}

/// Server -> client: the end of a listing, with how many names it left out because they
/// cannot be served (a link leading outside the served directory, a name that is not UTF-8,
/// minitls's own staging files, something it cannot stat). Names the access policy keeps from
/// this client are never counted: a count would tell what it may not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEnd {
    pub hidden: u32,
}

impl Codec for ListEnd {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.hidden);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            hidden: r.u32("hidden count")?,
        })
    }
}

/// A batch of listing entries; ListEnd closes the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<ListEntry>,
}

impl Codec for Listing {
    fn encode(&self, out: &mut Vec<u8>) {
        put_batch(out, &self.entries);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            entries: read_batch(r, MAX_LIST_ENTRIES_PER_MSG, "entry count", "listing")?,
        })
    }
}

/// `count u16 | count x item`: a batch of entries (Listing, TreeHave). Encoders are given
/// batches bounded below 65,536 by their senders.
fn put_batch<T: Codec>(out: &mut Vec<u8>, items: &[T]) {
    let n = u16::try_from(items.len()).expect("batches are bounded by their senders");
    put_u16(out, n);
    for item in items {
        item.encode(out);
    }
}

/// Reads a batch of at most `max` items; the count is checked first, and the vector grows as
/// items actually decode (the count is never trusted for the allocation).
fn read_batch<T: Codec>(
    r: &mut Reader<'_>,
    max: usize,
    count_name: &'static str,
    what: &'static str,
) -> Result<Vec<T>, DecodeError> {
    let n = r.u16(count_name)? as usize;
    if n > max {
        return Err(DecodeError::TooLong { what, len: n, max });
    }
    let mut items = Vec::new();
    for _ in 0..n {
        items.push(T::read(r)?);
    }
    Ok(items)
}

/// Most entries in one TreeHave message.
pub const MAX_HAVE_ENTRIES_PER_MSG: usize = 1024;

/// One file of a tree that the client holds: its path relative to the requested directory,
/// how many bytes it holds (all of the file, or the start of it) and their SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaveEntry {
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl Codec for HaveEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, self.path.as_bytes());
        put_u64(out, self.size);
        out.extend_from_slice(&self.sha256);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            path: r.string(MAX_PATH_LEN, "have path")?,
            size: r.u64("have size")?,
            sha256: r.array("have sha256")?,
        })
    }
}

/// Client -> server: a batch of files the client holds; the recursive Get that follows sends
/// each of them from the end of what the client holds when the server's file starts with
/// those bytes (a whole file: no data at all), and whole otherwise. Any number of batches may
/// precede the Get; they apply to it only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeHave {
    pub entries: Vec<HaveEntry>,
}

impl Codec for TreeHave {
    fn encode(&self, out: &mut Vec<u8>) {
        put_batch(out, &self.entries);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            entries: read_batch(r, MAX_HAVE_ENTRIES_PER_MSG, "have count", "have batch")?,
        })
    }
}

/// Server -> client before a directory tree: totals, for progress and sanity limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeStart {
    /// The requested directory, relative to the served root; entry paths are relative to it.
    pub root: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

impl Codec for TreeStart {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, self.root.as_bytes());
        put_u64(out, self.files);
        put_u64(out, self.dirs);
        put_u64(out, self.bytes);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            root: r.string(MAX_PATH_LEN, "tree root")?,
            files: r.u64("file count")?,
            dirs: r.u64("directory count")?,
            bytes: r.u64("byte count")?,
        })
    }
}

/// A path-only message (TreeDir, Skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathMsg {
    pub path: String,
}

impl Codec for PathMsg {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, self.path.as_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            path: r.string(MAX_PATH_LEN, "path")?,
        })
    }
}

/// An entry of a tree that the server did not send, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedMsg {
    pub path: String,
    pub reason: String,
}

impl Codec for SkippedMsg {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, self.path.as_bytes());
        put_vec_u16(out, truncate_utf8(&self.reason, MAX_ERROR_TEXT));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            path: r.string(MAX_PATH_LEN, "path")?,
            reason: r.string(MAX_ERROR_TEXT, "reason")?,
        })
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &[u8] {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// The end of one file in a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDone {
    pub sha256: [u8; 32],
}

impl Codec for FileDone {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sha256);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sha256: r.array("digest")?,
        })
    }
}

/// The end of a tree: when it was signed and the signature over the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEnd {
    pub signed_at: i64,
    pub signature: Vec<u8>,
}

impl Codec for TreeEnd {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.signed_at as u64);
        put_vec_u16(out, &self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            signed_at: r.i64("signing time")?,
            signature: r.vec_u16(MAX_RSA_BLOB_LEN, "signature")?.to_vec(),
        })
    }
}

/// One entry of a signed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    pub kind: EntryKind,
    /// Relative to the manifest's root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Zeros for directories.
    pub sha256: [u8; 32],
}

impl Codec for ManifestEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        put_vec_u16(out, self.path.as_bytes());
        put_u64(out, self.size);
        out.extend_from_slice(&self.sha256);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = EntryKind::read(r)?;
        Ok(Self {
            kind,
            path: r.string(MAX_PATH_LEN, "path")?,
            size: r.u64("size")?,
            sha256: r.array("digest")?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    NotFound = 1,
    PathRefused = 2,
    IsDirectory = 3,
    ReadFailed = 4,
    BadRequest = 5,
    /// An upload would replace an existing file and `force` was not set.
    Exists = 6,
    /// An upload is larger than the server accepts.
    TooLarge = 7,
    /// The server could not store an upload (disk full, I/O error).
    WriteFailed = 8,
    /// An upload's data or signature did not match its signed statement.
    IntegrityFailed = 9,
}

impl ErrorCode {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::NotFound,
            2 => Self::PathRefused,
            3 => Self::IsDirectory,
            4 => Self::ReadFailed,
            5 => Self::BadRequest,
            6 => Self::Exists,
            7 => Self::TooLarge,
            8 => Self::WriteFailed,
            9 => Self::IntegrityFailed,
            _ => return None,
        })
    }
}

/// Server -> client: the request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub text: String,
}

impl Codec for ErrorMsg {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code as u8);
        put_vec_u16(out, truncate_utf8(&self.text, MAX_ERROR_TEXT));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = ErrorCode::from_u8(r.u8("error code")?)
            .ok_or(DecodeError::InvalidValue("error code"))?;
        Ok(Self {
            code,
            text: r.string(MAX_ERROR_TEXT, "error text")?,
        })
    }
}

/// Client -> server: what an upload is (`push`). A file's data follows as Data messages and a
/// FileEnd carrying the client's signed statement, once the server answered PutReady; a
/// directory is made at once and answered PutDone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutStart {
    pub kind: EntryKind,
    /// Replace an existing file (it still needs a write grant).
    pub force: bool,
    /// Where it goes, relative to the served root, `/`-separated and canonical.
    pub path: String,
    /// Bytes of data that follow (0 for a directory).
    pub size: u64,
    pub mtime: i64,
}

impl Codec for PutStart {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.push(self.force as u8);
        put_vec_u16(out, self.path.as_bytes());
        put_u64(out, self.size);
        put_u64(out, self.mtime as u64);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = EntryKind::read(r)?;
        let force = match r.u8("force flag")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::InvalidValue("force flag")),
        };
        Ok(Self {
            kind,
            force,
            path: r.string(MAX_PATH_LEN, "path")?,
            size: r.u64("size")?,
            mtime: r.i64("mtime")?,
        })
    }
}

/// A line of text between people (Say, Notice): at most [`MAX_SAY_LEN`] bytes of UTF-8. It
/// may hold any characters; whoever shows it escapes the control characters (see
/// [`escape_text`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextMsg {
    pub text: String,
}

impl Codec for TextMsg {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u16(out, truncate_utf8(&self.text, MAX_SAY_LEN));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            text: r.string(MAX_SAY_LEN, "message text")?,
        })
    }
}

/// Text from a peer made harmless for a terminal or a log: every control character (C0
/// including newline and tab, DEL, C1, and so ESC) becomes `\xNN`, the bidirectional
/// overrides and isolates (which reorder what a terminal shows) `\u{NNNN}`, and a backslash
/// `\\`, so that what is shown cannot be mistaken for an escape. Nothing is dropped.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Every application message, each carrying its own type byte: what a peer sends is one of
/// these, encoded by [`AppMessage::encode`] after its [`AppMessage::typ`], and what arrives is
/// decoded by [`AppMessage::decode`] from the type byte and the payload together, so a call
/// site never pairs a tag with the wrong struct. `Data` borrows its bytes (the hot path copies
/// nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppMessage<'a> {
    Request(Request),
    FileStart(FileStart),
    Data(&'a [u8]),
    FileEnd(FileEnd),
    Listing(Listing),
    ListEnd(ListEnd),
    Error(ErrorMsg),
    Close,
    TreeStart(TreeStart),
    TreeDir(PathMsg),
    FileDone(FileDone),
    Skipped(SkippedMsg),
    TreeEnd(TreeEnd),
    Put(PutStart),
    PutReady,
    /// The server's digest of what it stored (zeros for a directory).
    PutDone(FileDone),
    Say(TextMsg),
    Ping,
    Pong,
    Notice(TextMsg),
    Goodbye(Alert),
    TreeHave(TreeHave),
}

impl<'a> AppMessage<'a> {
    pub fn typ(&self) -> AppType {
        match self {
            Self::Request(_) => AppType::Request,
            Self::FileStart(_) => AppType::FileStart,
            Self::Data(_) => AppType::Data,
            Self::FileEnd(_) => AppType::FileEnd,
            Self::Listing(_) => AppType::Listing,
            Self::ListEnd(_) => AppType::ListEnd,
            Self::Error(_) => AppType::Error,
            Self::Close => AppType::Close,
            Self::TreeStart(_) => AppType::TreeStart,
            Self::TreeDir(_) => AppType::TreeDir,
            Self::FileDone(_) => AppType::FileDone,
            Self::Skipped(_) => AppType::Skipped,
            Self::TreeEnd(_) => AppType::TreeEnd,
            Self::Put(_) => AppType::Put,
            Self::PutReady => AppType::PutReady,
            Self::PutDone(_) => AppType::PutDone,
            Self::Say(_) => AppType::Say,
            Self::Ping => AppType::Ping,
            Self::Pong => AppType::Pong,
            Self::Notice(_) => AppType::Notice,
            Self::Goodbye(_) => AppType::Goodbye,
            Self::TreeHave(_) => AppType::TreeHave,
        }
    }

    /// The payload (without the type byte).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Request(m) => m.encode(out),
            Self::FileStart(m) => m.encode(out),
            Self::Data(d) => out.extend_from_slice(d),
            Self::FileEnd(m) => m.encode(out),
            Self::Listing(m) => m.encode(out),
            Self::Close | Self::PutReady | Self::Ping | Self::Pong => {}
            Self::Say(m) | Self::Notice(m) => m.encode(out),
            Self::Goodbye(a) => a.encode(out),
            Self::ListEnd(m) => m.encode(out),
            Self::Error(m) => m.encode(out),
            Self::TreeStart(m) => m.encode(out),
            Self::TreeDir(m) => m.encode(out),
            Self::FileDone(m) | Self::PutDone(m) => m.encode(out),
            Self::Skipped(m) => m.encode(out),
            Self::TreeEnd(m) => m.encode(out),
            Self::Put(m) => m.encode(out),
            Self::TreeHave(m) => m.encode(out),
        }
    }

    /// Decodes the payload of a message of type `typ`; trailing bytes are an error (so an
    /// empty message is exactly empty).
    pub fn decode(typ: AppType, payload: &'a [u8]) -> Result<Self, DecodeError> {
        fn empty(payload: &[u8]) -> Result<(), DecodeError> {
            match payload.len() {
                0 => Ok(()),
                n => Err(DecodeError::TrailingBytes(n)),
            }
        }
        Ok(match typ {
            AppType::Request => Self::Request(Request::decode(payload)?),
            AppType::FileStart => Self::FileStart(FileStart::decode(payload)?),
            AppType::Data => Self::Data(payload),
            AppType::FileEnd => Self::FileEnd(FileEnd::decode(payload)?),
            AppType::Listing => Self::Listing(Listing::decode(payload)?),
            AppType::ListEnd => Self::ListEnd(ListEnd::decode(payload)?),
            AppType::Error => Self::Error(ErrorMsg::decode(payload)?),
            AppType::Close => {
                empty(payload)?;
                Self::Close
            }
            AppType::TreeStart => Self::TreeStart(TreeStart::decode(payload)?),
            AppType::TreeDir => Self::TreeDir(PathMsg::decode(payload)?),
            AppType::FileDone => Self::FileDone(FileDone::decode(payload)?),
            AppType::Skipped => Self::Skipped(SkippedMsg::decode(payload)?),
            AppType::TreeEnd => Self::TreeEnd(TreeEnd::decode(payload)?),
            AppType::Put => Self::Put(PutStart::decode(payload)?),
            AppType::PutReady => {
                empty(payload)?;
                Self::PutReady
            }
            AppType::PutDone => Self::PutDone(FileDone::decode(payload)?),
            AppType::Say => Self::Say(TextMsg::decode(payload)?),
            AppType::Ping => {
                empty(payload)?;
                Self::Ping
            }
            AppType::Pong => {
                empty(payload)?;
                Self::Pong
            }
            AppType::Notice => Self::Notice(TextMsg::decode(payload)?),
            AppType::Goodbye => Self::Goodbye(Alert::decode(payload)?),
            AppType::TreeHave => Self::TreeHave(TreeHave::decode(payload)?),
            // The channel consumes tickets (conn.rs); one reaching here is out of place.
            AppType::NewTicket => return Err(DecodeError::InvalidValue("session ticket")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Codec + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = v.to_bytes();
        assert_eq!(T::decode(&bytes).unwrap(), v);
        // Every strict prefix is truncated, never a panic and never a success.
        for cut in 0..bytes.len() {
            assert!(T::decode(&bytes[..cut]).is_err(), "prefix {cut} decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(T::decode(&longer), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn every_message_round_trips_and_rejects_truncation_and_trailing_bytes() {
        roundtrip(ClientHello {
            version: 1,
            random: [7; 32],
            x25519: [9; 32],
        });
        roundtrip(ServerHello {
            version: 1,
            random: [1; 32],
            x25519: [2; 32],
            certificate: vec![3; 700],
            chain: vec![vec![7; 10], vec![8; 20]],
        });
        roundtrip(ClientCertificate {
            certificate: vec![4; 800],
            chain: vec![],
            wrapped_secret: vec![5; 256],
        });
        roundtrip(CertificateVerify {
            signature: vec![6; 384],
        });
        roundtrip(Finished { mac: [8; 32] });
        roundtrip(Alert::Busy);
        roundtrip(Request {
            kind: RequestKind::Get,
            recursive: true,
            offset: 99,
            prefix_sha256: [0; 32],
            path: "a/b é.txt".into(),
        });
        roundtrip(FileStart {
            path: "x".into(),
            size: 5,
            mtime: -3,
            offset: 0,
        });
        roundtrip(FileEnd {
            statement: FileStatement {
                path: "dir/f".into(),
                size: u64::MAX,
                sha256: [0xaa; 32],
                signed_at: 1_700_000_000,
            },
            signature: vec![1; 256],
        });
        roundtrip(Listing {
            entries: vec![
                ListEntry {
                    kind: EntryKind::Dir,
                    size: 0,
                    mtime: 1,
                    path: "d".into(),
                },
                ListEntry {
                    kind: EntryKind::File,
                    size: 10,
                    mtime: 2,
                    path: "d/f".into(),
                },
            ],
        });
        roundtrip(TreeStart {
            root: "a/b".into(),
            files: 3,
            dirs: 1,
            bytes: 1 << 40,
        });
        roundtrip(PathMsg { path: "x/y".into() });
        roundtrip(SkippedMsg {
            path: "l".into(),
            reason: "symbolic link".into(),
        });
        roundtrip(FileDone { sha256: [3; 32] });
        roundtrip(TreeEnd {
            signed_at: 5,
            signature: vec![2; 384],
        });
        roundtrip(ManifestEntry {
            kind: EntryKind::File,
            path: "sub/f".into(),
            size: 1,
            sha256: [4; 32],
        });
        roundtrip(ErrorMsg {
            code: ErrorCode::NotFound,
            text: "no such file".into(),
        });
        roundtrip(PutStart {
            kind: EntryKind::File,
            force: true,
            path: "uploads/alice/f".into(),
            size: 12,
            mtime: 7,
        });
    }

    #[test]
    fn every_app_message_carries_its_own_type_and_decodes_back() {
        let data = [5u8; 9];
        let msgs = [
            AppMessage::Data(&data),
            AppMessage::ListEnd(ListEnd { hidden: 3 }),
            AppMessage::Close,
            AppMessage::PutReady,
            AppMessage::PutDone(FileDone { sha256: [1; 32] }),
            AppMessage::Put(PutStart {
                kind: EntryKind::Dir,
                force: false,
                path: "d".into(),
                size: 0,
                mtime: 0,
            }),
            AppMessage::TreeDir(PathMsg { path: "t".into() }),
            AppMessage::Say(TextMsg {
                text: "hello \u{1b}[2J".into(),
            }),
            AppMessage::Ping,
            AppMessage::Pong,
            AppMessage::Notice(TextMsg { text: "é".into() }),
            AppMessage::Goodbye(Alert::DroppedByOperator),
            AppMessage::Goodbye(Alert::SessionTimeLimit),
            AppMessage::TreeHave(TreeHave {
                entries: vec![HaveEntry {
                    path: "a/b".into(),
                    size: 3,
                    sha256: [9; 32],
                }],
            }),
        ];
        for m in msgs {
            let mut b = Vec::new();
            m.encode(&mut b);
            assert_eq!(AppMessage::decode(m.typ(), &b).unwrap(), m);
            assert_eq!(AppType::from_u8(m.typ() as u8), Some(m.typ()));
        }
        assert_eq!(
            AppMessage::decode(AppType::PutReady, &[0]),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn a_message_text_longer_than_its_maximum_is_refused() {
        let ok = TextMsg {
            text: "x".repeat(MAX_SAY_LEN),
        };
        roundtrip(ok);
        let mut b = Vec::new();
        put_vec_u16(&mut b, &[b'x'; MAX_SAY_LEN + 1]);
        assert!(matches!(
            AppMessage::decode(AppType::Say, &b),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(matches!(
            AppMessage::decode(AppType::Notice, &b),
            Err(DecodeError::TooLong { .. })
        ));
        // A Goodbye carries exactly one known alert code.
        assert!(AppMessage::decode(AppType::Goodbye, &[]).is_err());
        assert!(AppMessage::decode(AppType::Goodbye, &[99]).is_err());
        assert!(AppMessage::decode(AppType::Ping, &[0]).is_err());
    }

    #[test]
    fn escaped_text_cannot_drive_a_terminal() {
        assert_eq!(
            escape_text("hi\u{1b}[2J\r\n\u{7f}\u{9b}\u{0}\\x"),
            "hi\\x1b[2J\\x0d\\x0a\\x7f\\x9b\\x00\\\\x"
        );
        assert_eq!(escape_text("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_text("plain é ✓"), "plain é ✓");
    }

    #[test]
    fn frame_header_rejects_oversized_lengths_before_allocation() {
        let h = FrameHeader::encode(FrameType::Record, MAX_RECORD_BODY);
        assert!(FrameHeader::parse(&h).is_ok());
        let mut big = h;
        big[1..5].copy_from_slice(&((MAX_RECORD_BODY + 1) as u32).to_be_bytes());
        assert!(matches!(
            FrameHeader::parse(&big),
            Err(DecodeError::TooLong { .. })
        ));
        let mut hs = FrameHeader::encode(FrameType::ClientHello, 0);
        hs[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(FrameHeader::parse(&hs).is_err());
        assert_eq!(
            FrameHeader::parse(&[0x99, 0, 0, 0, 0]),
            Err(DecodeError::UnknownType(0x99))
        );
    }

    #[test]
    fn length_prefixes_over_their_maximum_are_refused() {
        let mut b = Vec::new();
        put_u16(&mut b, (MAX_RSA_BLOB_LEN + 1) as u16);
        b.resize(b.len() + MAX_RSA_BLOB_LEN + 1, 0);
        assert!(matches!(
            CertificateVerify::decode(&b),
            Err(DecodeError::TooLong { .. })
        ));
        let mut l = Vec::new();
        put_u16(&mut l, (MAX_LIST_ENTRIES_PER_MSG + 1) as u16);
        assert!(matches!(
            Listing::decode(&l),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn invalid_utf8_in_a_path_is_refused() {
        let mut b = vec![1, 0];
        put_u64(&mut b, 0);
        b.extend_from_slice(&[0; 32]);
        put_vec_u16(&mut b, &[0xff, 0xfe]);
        assert_eq!(Request::decode(&b), Err(DecodeError::InvalidValue("path")));
    }
}
