//! Session resumption (protocol version 3): a returning client's handshake in one round trip,
//! with no RSA operation on either side and a fresh X25519 exchange for forward secrecy.
//!
//! ```text
//!  client                                         server
//!  ResumeHello {v, random_c, x25519_c, fp_c, ticket, binder}
//!  [EarlyRecord: read requests]            ---->  ticket opened, checked, used once;
//!                                                 client certificate verified again
//!                                          <----  ServerResume {v, random_s, x25519_s}
//!                                                 ServerFinished {HMAC(th)}
//!                                                 [records: the answers, a new ticket]
//!  ClientFinished {HMAC(th)}
//!  [records]                               ---->
//! ```
//!
//! When the server does not accept the ticket (unknown key after a restart, expired, used
//! before, issued to another certificate or under another server certificate), it answers the
//! ResumeHello as a ClientHello: a full handshake follows on the same connection, the early
//! records are skipped unread, and the client sends its requests again after its Finished.
//! A binder that does not verify, or a client certificate that no longer verifies (expired,
//! revoked), ends the handshake with an alert.

use subtle::ConstantTimeEq;
use x25519_dalek::{EphemeralSecret, PublicKey};

use super::key_schedule::{self, KeySchedule};
use super::{
    ClientConfig, Established, ExpectClientCertificate, ExpectClientHello, ExpectServerHello,
    HandshakeError, TicketContents, Transcript, absorb, dh, emit, expect, now, random32, short_fp,
    verify_peer,
};
use crate::crypto::{self, Secret32};
use crate::pki::{Role, VerifiedCert};
use crate::record::DirectionKeys;
use crate::wire::{
    ClientHello, Codec, Finished, FrameType, PROTOCOL_VERSION, ResumeHello, ServerResume,
    encode_frame,
};

/// What a client keeps of a session to resume it: the server's ticket and the secret it
/// stands for, and the server's certificate and chain as the full handshake verified them
/// (verified again before each use).
#[derive(Clone)]
pub struct ResumableSession {
    pub ticket: Vec<u8>,
    pub resumption: Secret32,
    pub server_der: Vec<u8>,
    pub server_chain: Vec<Vec<u8>>,
    /// Until when the client offers it (Unix seconds): the ticket's lifetime from receipt.
    pub expires_at: i64,
}

impl std::fmt::Debug for ResumableSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableSession")
            .field("ticket_len", &self.ticket.len())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The client's first flight for a resumption: the ResumeHello and the early-data keys.
pub struct ClientResumeFlight {
    pub state: ExpectServerResume,
    pub out: Vec<u8>,
    /// Keys of the requests sent before the server's answer (`EarlyRecord` frames).
    pub early: DirectionKeys,
}

/// Starts a resumption: checks the stored server certificate again (chain, validity, name,
/// CRL) and builds the ResumeHello. `Err` means the session cannot be used (the caller makes
/// a full handshake instead).
pub fn client_resume_start(
    config: ClientConfig,
    session: &ResumableSession,
) -> Result<ClientResumeFlight, HandshakeError> {
    let trust = config.trust();
    let server = verify_peer(
        &trust,
        &session.server_der,
        &session.server_chain,
        Role::Server,
        Some(&config.server_name),
        now(config.now_unix),
    )?;
    let eph = EphemeralSecret::random_from_rng(&mut rand::rng());
    let hello = ResumeHello {
        version: PROTOCOL_VERSION,
        random: random32(),
        x25519: PublicKey::from(&eph).to_bytes(),
        client_fingerprint: config.identity.fingerprint(),
        ticket: session.ticket.clone(),
        binder: [0; 32],
    };
    let mut frame = encode_frame(FrameType::ResumeHello, &hello.to_bytes());
    let binder = binder_over(&session.resumption, &frame);
    let at = frame.len() - 32;
    frame[at..].copy_from_slice(&binder);
    let mut transcript = Transcript::new();
    transcript.add(&frame);
    let early = key_schedule::early_keys(&session.resumption, &transcript.hash());
    (config.log)(&format!(
        "-> ResumeHello (session ticket for server certificate sha256 {}, fresh X25519 share) and the first requests as early data",
        short_fp(&server.fingerprint)
    ));
    Ok(ClientResumeFlight {
        state: ExpectServerResume {
            config,
            eph,
            transcript,
            resumption: session.resumption.clone(),
            server,
            server_der: session.server_der.clone(),
            server_chain: session.server_chain.clone(),
        },
        out: frame,
        early,
    })
}

/// The binder: HMAC under the ticket secret's binder key over every byte of the ResumeHello
/// frame before the binder itself.
fn binder_over(resumption: &Secret32, frame: &[u8]) -> [u8; 32] {
    let before = &frame[..frame.len().saturating_sub(32)];
    key_schedule::finished_mac(
        &key_schedule::binder_key(resumption),
        &crypto::sha256(before),
    )
}

/// Waiting for the server's answer to a ResumeHello.
pub struct ExpectServerResume {
    config: ClientConfig,
    eph: EphemeralSecret,
    transcript: Transcript,
    resumption: Secret32,
    /// The server certificate of the ticket's session, verified again just now.
    server: VerifiedCert,
    server_der: Vec<u8>,
    server_chain: Vec<Vec<u8>>,
}

impl ExpectServerResume {
    /// The server certificate of the ticket's session (verified again when the resumption
    /// started; the server proves it is the same server by its Finished), its DER and chain.
    pub fn server(&self) -> (VerifiedCert, Vec<u8>, Vec<Vec<u8>>) {
        (
            self.server.clone(),
            self.server_der.clone(),
            self.server_chain.clone(),
        )
    }

    /// Handles a ServerHello: the server declined the ticket and a full handshake follows
    /// (the early requests must then be sent again).
    pub fn handle_server_hello(
        self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<(super::ExpectServerCertificateVerify, Vec<u8>), HandshakeError> {
        let state = ExpectServerHello {
            config: self.config,
            eph: self.eph,
            transcript: self.transcript,
        };
        (state.config.log)("<- ServerHello: the server did not take the ticket; full handshake");
        state.handle(typ, body)
    }

    /// Whether `typ` is the server's answer to a resumption (else a full handshake or an alert).
    pub fn is_resumed(typ: FrameType) -> bool {
        typ == FrameType::ServerResume
    }

    /// Handles a ServerResume; its ServerFinished comes next.
    pub fn handle_resumed(
        mut self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<ExpectResumedServerFinished, HandshakeError> {
        let sr: ServerResume = expect(FrameType::ServerResume, typ, body)?;
        if sr.version != PROTOCOL_VERSION {
            return Err(HandshakeError::UnsupportedVersion(sr.version));
        }
        absorb(typ, body, &mut self.transcript);
        let shared = dh(self.eph, sr.x25519)?;
        let th = self.transcript.hash();
        let keys = key_schedule::derive_keys(
            &key_schedule::resumed_transport(&self.resumption),
            &shared,
            &th,
        );
        Ok(ExpectResumedServerFinished {
            config: self.config,
            keys,
            transcript: self.transcript,
            server: self.server,
            server_der: self.server_der,
            server_chain: self.server_chain,
        })
    }
}

/// A resumption the server accepted: its Finished is due.
pub struct ExpectResumedServerFinished {
    config: ClientConfig,
    keys: KeySchedule,
    transcript: Transcript,
    server: VerifiedCert,
    server_der: Vec<u8>,
    server_chain: Vec<Vec<u8>>,
}

impl ExpectResumedServerFinished {
    /// Checks the server's Finished; returns the session and our Finished, to send before
    /// any record.
    pub fn handle(
        mut self,
        typ: FrameType,
        body: &[u8],
    ) -> Result<(Established, Vec<u8>), HandshakeError> {
        let fin: Finished = expect(FrameType::ServerFinished, typ, body)?;
        // Only the server that sealed the ticket knows its secret: its Finished proves it.
        let th = self.transcript.hash();
        if !key_schedule::finished_mac_matches(&self.keys.server_finished, &th, &fin.mac) {
            return Err(HandshakeError::BadFinished(Role::Server));
        }
        absorb(typ, body, &mut self.transcript);
        let mut out = Vec::new();
        let mac = key_schedule::finished_mac(&self.keys.client_finished, &self.transcript.hash());
        emit(
            FrameType::ClientFinished,
            &Finished { mac },
            &mut self.transcript,
            &mut out,
        );
        (self.config.log)(&format!(
            "<- ServerResume, ServerFinished: session resumed with '{}' (no RSA), fresh X25519 mixed in; -> ClientFinished",
            self.server.subject
        ));
        Ok((
            established(
                self.keys,
                true,
                self.server,
                self.server_der,
                self.server_chain,
            ),
            out,
        ))
    }
}

fn established(
    keys: KeySchedule,
    client: bool,
    peer: VerifiedCert,
    peer_der: Vec<u8>,
    peer_chain: Vec<Vec<u8>>,
) -> Established {
    let (send, recv) = if client {
        (keys.c2s.clone(), keys.s2c.clone())
    } else {
        (keys.s2c.clone(), keys.c2s.clone())
    };
    Established {
        send,
        recv,
        peer,
        peer_der,
        peer_chain,
        resumption: keys.resumption.clone(),
        resumed: true,
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// The server's answer to a client's first frame.
pub enum ServerFirst {
    /// A full handshake (a ClientHello, or a ResumeHello whose ticket was not taken; `why`
    /// says why not, for the log).
    Full(Box<ExpectClientCertificate>, Vec<u8>, Option<&'static str>),
    /// Resumed: `out` is ServerResume and ServerFinished; the client's early records and then
    /// its Finished follow.
    Resumed(Box<ExpectResumedClientFinished>, Vec<u8>),
}

/// A resumed session on the server, before the client's Finished: early records may be
/// read (read requests only), and the session is `established` for sending.
pub struct ExpectResumedClientFinished {
    pub established: Established,
    /// Keys of the client's early records.
    pub early: DirectionKeys,
    /// What checks the client's Finished when it comes.
    pub finished: ClientFinishedCheck,
}

impl ExpectResumedClientFinished {
    /// Checks the client's Finished; the session is then established.
    pub fn handle(self, typ: FrameType, body: &[u8]) -> Result<Established, HandshakeError> {
        self.finished.check(typ, body)?;
        Ok(self.established)
    }
}

/// The key and transcript hash a resumed client's Finished must match.
pub struct ClientFinishedCheck {
    key: Secret32,
    transcript: [u8; 32],
}

impl ClientFinishedCheck {
    /// Checks the client's Finished (key confirmation: it derived the same keys, so it took
    /// part in this X25519 exchange).
    pub fn check(self, typ: FrameType, body: &[u8]) -> Result<(), HandshakeError> {
        let fin: Finished = expect(FrameType::ClientFinished, typ, body)?;
        if !key_schedule::finished_mac_matches(&self.key, &self.transcript, &fin.mac) {
            return Err(HandshakeError::BadFinished(Role::Client));
        }
        Ok(())
    }
}

impl ExpectClientHello {
    /// Handles the client's first frame, a ClientHello or a ResumeHello.
    pub fn handle_first(self, typ: FrameType, body: &[u8]) -> Result<ServerFirst, HandshakeError> {
        if typ != FrameType::ResumeHello {
            let hello: ClientHello = expect(FrameType::ClientHello, typ, body)?;
            if hello.version != PROTOCOL_VERSION {
                return Err(HandshakeError::UnsupportedVersion(hello.version));
            }
            (self.config.log)("<- ClientHello");
            let (next, out) = self.full(typ, body, hello.x25519)?;
            return Ok(ServerFirst::Full(Box::new(next), out, None));
        }
        let hello = ResumeHello::decode(body)?;
        if hello.version != PROTOCOL_VERSION {
            return Err(HandshakeError::UnsupportedVersion(hello.version));
        }
        match self.take_ticket(&hello, typ, body)? {
            Ok(contents) => self.resume(hello, contents, typ, body),
            Err(why) => {
                (self.config.log)(&format!("<- ResumeHello: {why}; full handshake"));
                let (next, out) = self.full(typ, body, hello.x25519)?;
                Ok(ServerFirst::Full(Box::new(next), out, Some(why)))
            }
        }
    }

    /// The ticket's contents if it may be used now; `Ok(Err(why))` when a full handshake is
    /// the answer, `Err` when the handshake must end (a binder that does not verify: someone
    /// holds a ticket without its secret).
    fn take_ticket(
        &self,
        hello: &ResumeHello,
        typ: FrameType,
        body: &[u8],
    ) -> Result<Result<TicketContents, &'static str>, HandshakeError> {
        let Some(keys) = &self.config.tickets else {
            return Ok(Err("this server issues no tickets"));
        };
        let Some(contents) = keys.open(&hello.ticket) else {
            return Ok(Err(
                "ticket not recognised (issued before a restart, or not ours)",
            ));
        };
        let now = now(self.config.now_unix);
        if now > contents.expires_at {
            return Ok(Err("ticket expired"));
        }
        if contents.server_fingerprint != self.config.identity.fingerprint() {
            return Ok(Err("ticket issued under another server certificate"));
        }
        if crypto::sha256(&contents.client_cert) != hello.client_fingerprint {
            return Ok(Err("ticket issued to another client certificate"));
        }
        let frame = encode_frame(typ, body);
        let expected = binder_over(&contents.resumption, &frame);
        if !bool::from(expected.ct_eq(&hello.binder)) {
            return Err(HandshakeError::BadBinder);
        }
        // Last: a ticket is spent only by a ResumeHello that could have used it.
        if !keys.use_once(contents.id, contents.expires_at, now) {
            return Ok(Err("ticket already used (a replayed first flight)"));
        }
        Ok(Ok(contents))
    }

    fn resume(
        self,
        hello: ResumeHello,
        contents: TicketContents,
        typ: FrameType,
        body: &[u8],
    ) -> Result<ServerFirst, HandshakeError> {
        let cfg = &self.config;
        // The client's certificate, as at its full handshake, must still be valid and not
        // revoked (with the CRL in force now).
        let trust = cfg.trust();
        let client = verify_peer(
            &trust,
            &contents.client_cert,
            &contents.client_chain,
            Role::Client,
            None,
            now(cfg.now_unix),
        )?;
        let mut transcript = Transcript::new();
        absorb(typ, body, &mut transcript);
        let early = key_schedule::early_keys(&contents.resumption, &transcript.hash());
        let eph = EphemeralSecret::random_from_rng(&mut rand::rng());
        let sr = ServerResume {
            version: PROTOCOL_VERSION,
            random: random32(),
            x25519: PublicKey::from(&eph).to_bytes(),
        };
        let shared = dh(eph, hello.x25519)?;
        let mut out = Vec::new();
        emit(FrameType::ServerResume, &sr, &mut transcript, &mut out);
        let th = transcript.hash();
        let keys = key_schedule::derive_keys(
            &key_schedule::resumed_transport(&contents.resumption),
            &shared,
            &th,
        );
        let mac = key_schedule::finished_mac(&keys.server_finished, &th);
        emit(
            FrameType::ServerFinished,
            &Finished { mac },
            &mut transcript,
            &mut out,
        );
        (cfg.log)(&format!(
            "<- ResumeHello: ticket accepted for '{}' (sha256 {}), certificate verified again; -> ServerResume, ServerFinished",
            client.subject,
            short_fp(&client.fingerprint)
        ));
        let finished = ClientFinishedCheck {
            key: keys.client_finished.clone(),
            transcript: transcript.hash(),
        };
        Ok(ServerFirst::Resumed(
            Box::new(ExpectResumedClientFinished {
                established: established(
                    keys,
                    false,
                    client,
                    contents.client_cert,
                    contents.client_chain,
                ),
                early,
                finished,
            }),
            out,
        ))
    }
}
