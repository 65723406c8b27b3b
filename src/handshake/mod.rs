//! The handshake as two state machines, client and server, with no I/O.
//!
//! Each state is a type named after what it waits for; `handle` consumes it, so a state can
//! never be reused. Inputs are received frames (type + body), outputs are encoded frames to
//! send. See PROTOCOL.md for the message flow and what each check defends against.
//!
//! ```text
//!  client                                         server
//!  ClientHello {v, random_c, x25519_c}     ---->
//!                                          <----  ServerHello {v, random_s, x25519_s, cert_s, chain_s}
//!  ClientCertificate {cert_c, chain_c, OAEP(secret)}
//!  ClientCertificateVerify {sig_c(th)}
//!  ClientFinished {HMAC(th)}               ---->
//!                                          <----  ServerCertificateVerify {sig_s(th)}
//!                                                 ServerFinished {HMAC(th)}
//!  [records]                               <--->  [records]
//! ```

pub mod key_schedule;
mod resume;
mod state;
mod ticket;

pub use resume::{
    ClientFinishedCheck, ClientResumeFlight, ExpectResumedClientFinished,
    ExpectResumedServerFinished, ExpectServerResume, ResumableSession, ServerFirst,
    client_resume_start,
};
pub use state::{ClientState, ServerState};
pub use ticket::{DEFAULT_TICKET_LIFETIME, MAX_USED_TICKETS, TicketContents, TicketKeys};

use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;
use x25519_dalek::{EphemeralSecret, PublicKey};

use crate::crypto::{self, CLIENT_SIGNATURE_CONTEXT, SERVER_SIGNATURE_CONTEXT, Secret32, Signer};
use key_schedule::KeySchedule;

use crate::pki::{
    self, CertError, CertRejection, Crl, Identity, PrivateKey, Role, TrustAnchor, VerifiedCert,
};
use crate::record::DirectionKeys;
use crate::wire::{
    Alert, CertificateVerify, ClientCertificate, ClientHello, Codec, DecodeError, Finished,
    FrameType, PROTOCOL_VERSION, ServerHello, encode_frame,
};

/// A callback that is told each handshake step (for `-v`). Never given secrets.
pub type StepLog = Arc<dyn Fn(&str) + Send + Sync>;

fn no_log() -> StepLog {
    Arc::new(|_| {})
}

/// Our identity prepared for the handshake: the signer keeps the key's precomputed values.
pub struct LocalIdentity {
    pub cert_der: Vec<u8>,
    /// Intermediate CA certificates sent after ours, issuer first.
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKey,
    signer: Signer,
    fingerprint: [u8; 32],
    /// End of our certificate's validity (Unix seconds): a ticket never outlives it.
    not_after: i64,
}

impl LocalIdentity {
    pub fn new(identity: Identity) -> Self {
        let signer = Signer::new(&identity.key);
        let fingerprint = crypto::sha256(&identity.cert_der);
        let not_after = pki::summarize_certificate_der(&identity.cert_der)
            .map_or(i64::MAX, |s| s.not_after_unix);
        Self {
            cert_der: identity.cert_der,
            chain: identity.chain,
            key: identity.key,
            signer,
            fingerprint,
            not_after,
        }
    }

    /// End of our certificate's validity (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

/// What a client needs to run a handshake.
#[derive(Clone)]
pub struct ClientConfig {
    pub identity: Arc<LocalIdentity>,
    pub anchor: Arc<TrustAnchor>,
    /// More trust anchors besides `anchor` (a `--ca-cert` bundle); a peer may chain to any.
    pub extra_anchors: Arc<Vec<TrustAnchor>>,
    /// The name the server certificate must carry (DNS or IP SAN).
    pub server_name: String,
    /// The CA's revocation list, already checked against `anchor`; a server certificate it
    /// names is refused.
    pub crl: Option<Arc<Crl>>,
    pub log: StepLog,
    /// Clock for certificate validity; `None` means now. Tests set it.
    pub now_unix: Option<i64>,
}

impl ClientConfig {
    pub fn new(identity: Arc<LocalIdentity>, anchor: Arc<TrustAnchor>, server_name: &str) -> Self {
        Self {
            identity,
            anchor,
            extra_anchors: Arc::new(Vec::new()),
            server_name: server_name.to_string(),
            crl: None,
            log: no_log(),
            now_unix: None,
        }
    }
}

/// What a server needs to run handshakes.
#[derive(Clone)]
pub struct ServerConfig {
    pub identity: Arc<LocalIdentity>,
    pub anchor: Arc<TrustAnchor>,
    /// More trust anchors besides `anchor` (a `--ca-cert` bundle); a client may chain to any.
    pub extra_anchors: Arc<Vec<TrustAnchor>>,
    /// The CA's revocation list, already checked against `anchor`; a client certificate it
    /// names is refused. The server swaps in a fresh one per connection when the file changes.
    pub crl: Option<Arc<Crl>>,
    pub log: StepLog,
    pub now_unix: Option<i64>,
    /// Session tickets: issued after each handshake and accepted from returning clients.
    /// `None`: no tickets (a ResumeHello gets a full handshake).
    pub tickets: Option<Arc<TicketKeys>>,
}

impl ServerConfig {
    pub fn new(identity: Arc<LocalIdentity>, anchor: Arc<TrustAnchor>) -> Self {
        Self {
            identity,
            anchor,
            extra_anchors: Arc::new(Vec::new()),
            crl: None,
            log: no_log(),
            now_unix: None,
            tickets: None,
        }
    }
}

impl ClientConfig {
    /// What a server certificate is checked against.
    fn trust(&self) -> Trust<'_> {
        Trust {
            anchor: &self.anchor,
            extra: &self.extra_anchors,
            crl: self.crl.as_deref(),
        }
    }
}

impl ServerConfig {
    /// What a client certificate is checked against.
    fn trust(&self) -> Trust<'_> {
        Trust {
            anchor: &self.anchor,
            extra: &self.extra_anchors,
            crl: self.crl.as_deref(),
        }
    }
}

/// Why a handshake failed. [`HandshakeError::alert`] says what (little) the peer is told.
#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("malformed handshake message: {0}")]
    Decode(#[from] DecodeError),
    #[error("unexpected {got:?} while waiting for {expected:?}")]
    Unexpected { expected: FrameType, got: FrameType },
    #[error("peer speaks protocol version {0}, this build speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion(u16),
    #[error("{role} certificate rejected: {source}")]
    PeerCertificate {
        role: Role,
        #[source]
        source: CertError,
    },
    #[error(
        "the {0} did not prove it holds the private key of its certificate (transcript signature invalid)"
    )]
    BadSignature(Role),
    #[error("key confirmation failed: the {0}'s Finished message does not match")]
    BadFinished(Role),
    #[error(
        "the client presented a session ticket without its secret (the ResumeHello's binder does not verify)"
    )]
    BadBinder,
    #[error("the peer's key share is invalid")]
    BadKeyShare,
    #[error("the peer refused the handshake: {0}")]
    PeerAlert(Alert),
    #[error("local cryptographic failure: {0}")]
    Local(String),
}

impl HandshakeError {
    /// The alert to send to the peer, if any. Signature, MAC and unwrap failures all map to
    /// the same `HandshakeFailure`.
    pub fn alert(&self) -> Option<Alert> {
        Some(match self {
            Self::Decode(_) | Self::Unexpected { .. } | Self::BadKeyShare => Alert::ProtocolError,
            Self::UnsupportedVersion(_) => Alert::UnsupportedVersion,
            // The class of the reason (never its details), so the peer's message can name it.
            Self::PeerCertificate { source, .. } => match source.reason() {
                CertRejection::Expired => Alert::CertificateExpired,
                CertRejection::Revoked => Alert::CertificateRevoked,
                CertRejection::WrongRole => Alert::CertificateWrongRole,
                CertRejection::UnknownCa => Alert::UnknownCa,
                CertRejection::Other => Alert::BadCertificate,
            },
            Self::BadSignature(_) | Self::BadFinished(_) | Self::BadBinder => {
                Alert::HandshakeFailure
            }
            Self::PeerAlert(_) | Self::Local(_) => return None,
        })
    }
}

/// The running transcript hash: every handshake frame (header and body), in order.
#[derive(Clone)]
pub struct Transcript(Sha256);

impl Transcript {
    fn new() -> Self {
        Self(Sha256::new())
    }

    fn add(&mut self, frame: &[u8]) {
        self.0.update(frame);
    }

    fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// Keys and peer identity of a finished handshake.
pub struct Established {
    pub send: DirectionKeys,
    pub recv: DirectionKeys,
    /// The peer's certificate: recorded only after its transcript signature verified and its
    /// Finished MAC matched.
    pub peer: VerifiedCert,
    /// The peer's certificate as sent (DER), kept so a received file's signature can be
    /// checked again later.
    pub peer_der: Vec<u8>,
    /// The intermediate CA certificates the peer sent after its own (issuer first).
    pub peer_chain: Vec<Vec<u8>>,
    /// The secret a session ticket for this session stands for (see `resume.rs`).
    pub resumption: Secret32,
    /// Whether this session was resumed from a ticket (no certificate signatures in it).
    pub resumed: bool,
}

/// Decodes `body` as `T` if `typ` is the expected frame type; an alert becomes `PeerAlert`.
fn expect<T: Codec>(expected: FrameType, typ: FrameType, body: &[u8]) -> Result<T, HandshakeError> {
    if typ == FrameType::Alert {
        return Err(match Alert::decode(body) {
            Ok(a) => HandshakeError::PeerAlert(a),
            Err(e) => HandshakeError::Decode(e),
        });
    }
    if typ != expected {
        return Err(HandshakeError::Unexpected { expected, got: typ });
    }
    Ok(T::decode(body)?)
}

/// Encodes a message as a frame, adds it to the transcript and to the outgoing bytes.
fn emit<T: Codec>(typ: FrameType, msg: &T, transcript: &mut Transcript, out: &mut Vec<u8>) {
    let frame = encode_frame(typ, &msg.to_bytes());
    transcript.add(&frame);
    out.extend_from_slice(&frame);
}

fn absorb(typ: FrameType, body: &[u8], transcript: &mut Transcript) {
    transcript.add(&encode_frame(typ, body));
}

fn random32() -> [u8; 32] {
    let mut r = [0u8; 32];
    rand::fill(&mut r[..]);
    r
}

fn dh(secret: EphemeralSecret, peer: [u8; 32]) -> Result<Secret32, HandshakeError> {
    let shared = secret.diffie_hellman(&PublicKey::from(peer));
    // A low-order point gives an all-zero secret: the peer would control the DH output.
    if !shared.was_contributory() {
        return Err(HandshakeError::BadKeyShare);
    }
    Ok(Secret32(shared.to_bytes()))
}

/// The trust anchors and revocation list a peer certificate is checked against.
struct Trust<'a> {
    anchor: &'a TrustAnchor,
    extra: &'a [TrustAnchor],
    crl: Option<&'a Crl>,
}

/// Verifies a peer certificate and its chain, then looks the path up in the revocation list
/// if there is one.
fn verify_peer(
    trust: &Trust<'_>,
    der: &[u8],
    chain: &[Vec<u8>],
    role: Role,
    server_name: Option<&str>,
    now_unix: i64,
) -> Result<VerifiedCert, HandshakeError> {
    let wrap = |source| HandshakeError::PeerCertificate { role, source };
    let mut anchors: Vec<&TrustAnchor> = Vec::with_capacity(1 + trust.extra.len());
    anchors.push(trust.anchor);
    anchors.extend(trust.extra.iter());
    let cert =
        pki::verify_chain(&anchors, der, chain, role, server_name, now_unix).map_err(wrap)?;
    if let Some(crl) = trust.crl {
        crl.check(&cert).map_err(wrap)?;
    }
    Ok(cert)
}

fn now(clock: Option<i64>) -> i64 {
    clock.unwrap_or_else(pki::now_unix)
}

fn short_fp(fp: &[u8; 32]) -> String {
    pki::fingerprint_hex(fp)
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Starts a client handshake: returns the first state and the ClientHello to send.
pub fn client_start(config: ClientConfig) -> (ExpectServerHello, Vec<u8>) {
    let mut transcript = Transcript::new();
    let random = random32();
    let eph = EphemeralSecret::random_from_rng(&mut rand::rng());
    let hello = ClientHello {
        version: PROTOCOL_VERSION,
        random,
        x25519: PublicKey::from(&eph).to_bytes(),
    };
    let mut out = Vec::new();
    emit(FrameType::ClientHello, &hello, &mut transcript, &mut out);
    (config.log)("-> ClientHello (fresh client random, ephemeral X25519 share)");
    (
        ExpectServerHello {
            config,
            eph,
            transcript,
        },
        out,
    )
}

pub struct ExpectServerHello {
    config: ClientConfig,
    eph: EphemeralSecret,
    transcript: Transcript,
}

impl ExpectServerHello {
    pub fn handle(
        mut self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<(ExpectServerCertificateVerify, Vec<u8>), HandshakeError> {
        let cfg = &self.config;
        let hello: ServerHello = expect(FrameType::ServerHello, typ, body)?;
        if hello.version != PROTOCOL_VERSION {
            return Err(HandshakeError::UnsupportedVersion(hello.version));
        }
        absorb(typ, body, &mut self.transcript);

        // 1. Validate the server certificate before trusting its key with anything:
        //    chain to our CA, validity, serverAuth EKU, and the name we asked for.
        //    And not revoked, when we have the CA's list.
        let trust = cfg.trust();
        let server_cert = verify_peer(
            &trust,
            &hello.certificate,
            &hello.chain,
            Role::Server,
            Some(&cfg.server_name),
            now(cfg.now_unix),
        )?;
        (cfg.log)(&format!(
            "<- ServerHello: certificate '{}' (sha256 {}) chains to CA '{}', is valid now, has serverAuth and names '{}'",
            server_cert.subject,
            short_fp(&server_cert.fingerprint),
            server_cert.anchor_subject,
            cfg.server_name
        ));

        // 2. Ephemeral X25519 for forward secrecy.
        let dh = dh(self.eph, hello.x25519)?;

        // 3. Key transport: a fresh secret wrapped with RSA-OAEP to the verified server key.
        let secret = Secret32(random32());
        // verify_peer accepted the certificate for the server role, which means an RSA key.
        let server_rsa = server_cert.public_key.rsa().ok_or_else(|| {
            HandshakeError::Local("the server certificate's key is not RSA".into())
        })?;
        let wrapped = crypto::wrap_secret(server_rsa, &secret)
            .map_err(|e| HandshakeError::Local(format!("RSA-OAEP wrap failed: {e}")))?;
        let mut out = Vec::new();
        let cc = ClientCertificate {
            certificate: cfg.identity.cert_der.clone(),
            chain: cfg.identity.chain.clone(),
            wrapped_secret: wrapped,
        };
        emit(
            FrameType::ClientCertificate,
            &cc,
            &mut self.transcript,
            &mut out,
        );
        (cfg.log)(&format!(
            "-> ClientCertificate (sha256 {}) and the session secret wrapped with RSA-OAEP-SHA256 to the server's key",
            short_fp(&cfg.identity.fingerprint())
        ));

        // 4. Proof of possession: sign the transcript (both randoms, both certificates, the
        //    wrapped secret) under the client context.
        let th = self.transcript.hash();
        let signature = crypto::sign(cfg.identity.signer(), CLIENT_SIGNATURE_CONTEXT, &th)
            .map_err(|e| HandshakeError::Local(format!("signing failed: {e}")))?;
        emit(
            FrameType::ClientCertificateVerify,
            &CertificateVerify { signature },
            &mut self.transcript,
            &mut out,
        );
        (cfg.log)(&format!(
            "-> ClientCertificateVerify ({} signature over the transcript hash)",
            cfg.identity.key.public_key().signature_name()
        ));

        // 5. Key schedule salted with the transcript, then our Finished.
        let th = self.transcript.hash();
        let signed_by_server = th;
        let keys = key_schedule::derive_keys(&secret, &dh, &th);
        let mac = key_schedule::finished_mac(&keys.client_finished, &th);
        emit(
            FrameType::ClientFinished,
            &Finished { mac },
            &mut self.transcript,
            &mut out,
        );
        (cfg.log)("-> ClientFinished (HMAC over the transcript: key confirmation)");
        Ok((
            ExpectServerCertificateVerify {
                config: self.config,
                unverified_server: server_cert,
                server_der: hello.certificate,
                server_chain: hello.chain,
                keys,
                signed_by_server,
                transcript: self.transcript,
            },
            out,
        ))
    }
}

pub struct ExpectServerCertificateVerify {
    config: ClientConfig,
    /// Valid certificate, but the server has not yet proven it holds the key.
    unverified_server: VerifiedCert,
    server_der: Vec<u8>,
    server_chain: Vec<Vec<u8>>,
    keys: KeySchedule,
    /// TH(ClientCertificateVerify): what the server's signature must cover.
    signed_by_server: [u8; 32],
    transcript: Transcript,
}

impl ExpectServerCertificateVerify {
    /// The record keys (client to server, server to client), known once our flight is made:
    /// the client may seal its first requests with them and send them with its Finished
    /// (only the holder of the server's key can derive them), but must not act on anything it
    /// opens before [`ExpectServerFinished::handle`] returned `Established`.
    pub fn record_keys(&self) -> (DirectionKeys, DirectionKeys) {
        (self.keys.c2s.clone(), self.keys.s2c.clone())
    }

    /// The server's certificate as validated in the ServerHello (chain, validity, EKU, name),
    /// and as sent; the server has not yet proven that it holds its key.
    pub fn unverified_server(&self) -> (&VerifiedCert, &[u8]) {
        (&self.unverified_server, &self.server_der)
    }

    pub fn handle(
        mut self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<ExpectServerFinished, HandshakeError> {
        let cv: CertificateVerify = expect(FrameType::ServerCertificateVerify, typ, body)?;
        // 6. The server signs the transcript through our signature (both randoms and key
        //    shares, both certificates, the wrapped secret): only the holder of the server key
        //    can produce this for this fresh transcript. Its Finished covers the rest.
        if !crypto::verify(
            &self.unverified_server.public_key,
            SERVER_SIGNATURE_CONTEXT,
            &self.signed_by_server,
            &cv.signature,
        ) {
            return Err(HandshakeError::BadSignature(Role::Server));
        }
        absorb(typ, body, &mut self.transcript);
        (self.config.log)(
            "<- ServerCertificateVerify: server signature over the transcript verified",
        );
        Ok(ExpectServerFinished {
            config: self.config,
            server: self.unverified_server,
            server_der: self.server_der,
            server_chain: self.server_chain,
            keys: self.keys,
            transcript: self.transcript,
        })
    }
}

pub struct ExpectServerFinished {
    config: ClientConfig,
    server: VerifiedCert,
    server_der: Vec<u8>,
    server_chain: Vec<Vec<u8>>,
    keys: KeySchedule,
    transcript: Transcript,
}

impl ExpectServerFinished {
    pub fn handle(self, typ: FrameType, body: &[u8]) -> Result<Established, HandshakeError> {
        let fin: Finished = expect(FrameType::ServerFinished, typ, body)?;
        // 7. Key confirmation: the server derived the same keys (so it unwrapped our secret).
        let th = self.transcript.hash();
        if !key_schedule::finished_mac_matches(&self.keys.server_finished, &th, &fin.mac) {
            return Err(HandshakeError::BadFinished(Role::Server));
        }
        (self.config.log)(
            "<- ServerFinished: key confirmed in both directions; channel open (AES-256-GCM)",
        );
        Ok(Established {
            send: self.keys.c2s.clone(),
            recv: self.keys.s2c.clone(),
            peer: self.server,
            peer_der: self.server_der,
            peer_chain: self.server_chain,
            resumption: self.keys.resumption.clone(),
            resumed: false,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

pub struct ExpectClientHello {
    config: ServerConfig,
}

/// Starts a server handshake for one connection.
pub fn server_start(config: ServerConfig) -> ExpectClientHello {
    ExpectClientHello { config }
}

impl ExpectClientHello {
    pub fn handle(
        self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<(ExpectClientCertificate, Vec<u8>), HandshakeError> {
        let hello: ClientHello = expect(FrameType::ClientHello, typ, body)?;
        if hello.version != PROTOCOL_VERSION {
            return Err(HandshakeError::UnsupportedVersion(hello.version));
        }
        (self.config.log)("<- ClientHello");
        self.full(typ, body, hello.x25519)
    }

    /// A full handshake answering the first frame (`typ`, `body`: a ClientHello, or a
    /// ResumeHello whose ticket was not accepted), whose key share is `x25519`.
    fn full(
        self,
        typ: FrameType,
        body: &[u8],
        peer_share: [u8; 32],
    ) -> Result<(ExpectClientCertificate, Vec<u8>), HandshakeError> {
        let mut transcript = Transcript::new();
        absorb(typ, body, &mut transcript);

        // 1. Our fresh random makes every transcript unique: a recorded client flight
        //    cannot be replayed into a later handshake.
        let eph = EphemeralSecret::random_from_rng(&mut rand::rng());
        let x25519 = PublicKey::from(&eph).to_bytes();
        let dh = dh(eph, peer_share)?;
        let sh = ServerHello {
            version: PROTOCOL_VERSION,
            random: random32(),
            x25519,
            certificate: self.config.identity.cert_der.clone(),
            chain: self.config.identity.chain.clone(),
        };
        let mut out = Vec::new();
        emit(FrameType::ServerHello, &sh, &mut transcript, &mut out);
        (self.config.log)(&format!(
            "-> ServerHello (fresh server random, X25519 share, certificate sha256 {})",
            short_fp(&self.config.identity.fingerprint())
        ));
        Ok((
            ExpectClientCertificate {
                config: self.config,
                dh,
                transcript,
            },
            out,
        ))
    }
}

pub struct ExpectClientCertificate {
    config: ServerConfig,
    dh: Secret32,
    transcript: Transcript,
}

impl ExpectClientCertificate {
    pub fn handle(
        mut self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<ExpectClientCertificateVerify, HandshakeError> {
        let cc: ClientCertificate = expect(FrameType::ClientCertificate, typ, body)?;
        // 2. Validate the client certificate: chain, validity, clientAuth EKU, and not on the
        //    CA's revocation list.
        let trust = self.config.trust();
        let client = verify_peer(
            &trust,
            &cc.certificate,
            &cc.chain,
            Role::Client,
            None,
            now(self.config.now_unix),
        )?;
        absorb(typ, body, &mut self.transcript);
        (self.config.log)(&format!(
            "<- ClientCertificate: '{}' (sha256 {}) chains to CA '{}', is valid now and has clientAuth",
            client.subject,
            short_fp(&client.fingerprint),
            client.anchor_subject
        ));
        Ok(ExpectClientCertificateVerify {
            config: self.config,
            dh: self.dh,
            unverified_client: client,
            client_der: cc.certificate,
            client_chain: cc.chain,
            wrapped_secret: cc.wrapped_secret,
            transcript: self.transcript,
        })
    }
}

pub struct ExpectClientCertificateVerify {
    config: ServerConfig,
    dh: Secret32,
    /// Valid certificate, but possession of its key is not yet proven.
    unverified_client: VerifiedCert,
    client_der: Vec<u8>,
    client_chain: Vec<Vec<u8>>,
    wrapped_secret: Vec<u8>,
    transcript: Transcript,
}

impl ExpectClientCertificateVerify {
    pub fn handle(
        mut self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<ExpectClientFinished, HandshakeError> {
        let cv: CertificateVerify = expect(FrameType::ClientCertificateVerify, typ, body)?;
        // 3. Proof of possession: a copy of client.crt without client.key stops here, and a
        //    replayed flight fails because our random is in the signed transcript.
        let th = self.transcript.hash();
        if !crypto::verify(
            &self.unverified_client.public_key,
            CLIENT_SIGNATURE_CONTEXT,
            &th,
            &cv.signature,
        ) {
            return Err(HandshakeError::BadSignature(Role::Client));
        }
        absorb(typ, body, &mut self.transcript);
        (self.config.log)(
            "<- ClientCertificateVerify: client signature over the transcript verified",
        );

        // 4. Only now touch the RSA private key (RUSTSEC-2023-0071): an unauthenticated peer
        //    can never use us as a decryption oracle. Failures become a random secret.
        //    Our transcript signature covers the same transcript (through the client's
        //    signature), so the two private-key operations run at once, on two threads: a
        //    round trip's worth of latency less per handshake.
        let th = self.transcript.hash();
        let identity = &self.config.identity;
        let Some(server_key) = identity.key.rsa() else {
            return Err(HandshakeError::Local(
                "the server's key is not RSA, so it cannot receive the wrapped secret".into(),
            ));
        };
        let sign = || crypto::sign(identity.signer(), SERVER_SIGNATURE_CONTEXT, &th);
        let (secret, signature) = std::thread::scope(|scope| {
            // No thread to be had (a server at the system's thread limit): sign here, after.
            let signer = std::thread::Builder::new().spawn_scoped(scope, sign).ok();
            let secret = crypto::unwrap_secret(server_key, &self.wrapped_secret);
            let signature = match signer.map(|s| s.join()) {
                Some(Ok(r)) => r,
                Some(Err(_)) => {
                    return (secret, Err(HandshakeError::Local("signing failed".into())));
                }
                None => sign(),
            };
            (
                secret,
                signature.map_err(|e| HandshakeError::Local(format!("signing failed: {e}"))),
            )
        });
        let signature = signature?;
        let keys = key_schedule::derive_keys(&secret, &self.dh, &th);
        Ok(ExpectClientFinished {
            config: self.config,
            unverified_client: self.unverified_client,
            client_der: self.client_der,
            client_chain: self.client_chain,
            keys,
            signature,
            transcript: self.transcript,
        })
    }
}

pub struct ExpectClientFinished {
    config: ServerConfig,
    unverified_client: VerifiedCert,
    client_der: Vec<u8>,
    client_chain: Vec<Vec<u8>>,
    keys: KeySchedule,
    /// Our signature over TH(ClientCertificateVerify), sent once the client's Finished is
    /// confirmed.
    signature: Vec<u8>,
    transcript: Transcript,
}

impl ExpectClientFinished {
    pub fn handle(
        mut self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<(Established, Vec<u8>), HandshakeError> {
        let fin: Finished = expect(FrameType::ClientFinished, typ, body)?;
        // 5. Key confirmation from the client, in constant time. A wrong MAC and a failed
        //    unwrap are indistinguishable here.
        let th = self.transcript.hash();
        if !key_schedule::finished_mac_matches(&self.keys.client_finished, &th, &fin.mac) {
            return Err(HandshakeError::BadFinished(Role::Client));
        }
        absorb(typ, body, &mut self.transcript);
        (self.config.log)("<- ClientFinished: client key confirmed");

        // 6. Our signature (made in step 4), then our Finished over everything.
        let mut out = Vec::new();
        emit(
            FrameType::ServerCertificateVerify,
            &CertificateVerify {
                signature: self.signature,
            },
            &mut self.transcript,
            &mut out,
        );
        let th = self.transcript.hash();
        let mac = key_schedule::finished_mac(&self.keys.server_finished, &th);
        emit(
            FrameType::ServerFinished,
            &Finished { mac },
            &mut self.transcript,
            &mut out,
        );
        (self.config.log)("-> ServerCertificateVerify, ServerFinished; channel open (AES-256-GCM)");
        Ok((
            Established {
                send: self.keys.s2c.clone(),
                recv: self.keys.c2s.clone(),
                peer: self.unverified_client,
                peer_der: self.client_der,
                peer_chain: self.client_chain,
                resumption: self.keys.resumption.clone(),
                resumed: false,
            },
            out,
        ))
    }
}
