//! Each side's handshake as one value: [`ClientState`] and [`ServerState`] name the frame each
//! waits for, and `step` takes the received frame to the next state and the bytes to send.
//! Every driver goes through them: the connection (`conn.rs`), the in-memory tests, the
//! exhaustive tampering sweep and the fuzz targets, so all run the same sequence and every
//! failure maps to the same alert ([`HandshakeError::alert`]).
//!
//! ```text
//!  client: ServerHello ─> ServerCertificateVerify ─> ServerFinished ─> Done
//!          ServerHelloOrResume ─┬─> ResumedServerFinished ─> Done          (resumption)
//!                               └─> ServerCertificateVerify ...            (ticket declined)
//!  server: ClientHello ─┬─> ClientCertificate ─> ClientCertificateVerify ─> ClientFinished ─> Done
//!                       └─> ResumedClientFinished (early data may come first) ─> Done
//! ```

use super::resume::{
    ClientResumeFlight, ExpectResumedClientFinished, ExpectResumedServerFinished,
    ExpectServerResume, ServerFirst, client_resume_start,
};
use super::{
    ClientConfig, Established, ExpectClientCertificate, ExpectClientCertificateVerify,
    ExpectClientFinished, ExpectClientHello, ExpectServerCertificateVerify, ExpectServerFinished,
    ExpectServerHello, HandshakeError, ResumableSession, ServerConfig, client_start, server_start,
};
use crate::record::DirectionKeys;
use crate::wire::FrameType;

/// Where a client's handshake stands.
pub enum ClientState {
    /// After a ClientHello.
    ServerHello(ExpectServerHello),
    /// After a ResumeHello: a ServerResume (accepted) or a ServerHello (declined).
    ServerHelloOrResume(ExpectServerResume),
    ResumedServerFinished(ExpectResumedServerFinished),
    /// After our Finished: the first requests may be sent (see [`Self::record_keys`]).
    ServerCertificateVerify(Box<ExpectServerCertificateVerify>),
    ServerFinished(Box<ExpectServerFinished>),
    Done(Box<Established>),
}

impl ClientState {
    /// A full handshake: the state and the ClientHello to send.
    pub fn start(config: ClientConfig) -> (Self, Vec<u8>) {
        let (state, out) = client_start(config);
        (Self::ServerHello(state), out)
    }

    /// A resumption of `session`: the state, the ResumeHello to send and the early-data keys.
    /// `Err` if the session no longer verifies (make a full handshake instead).
    pub fn resume(
        config: ClientConfig,
        session: &ResumableSession,
    ) -> Result<(Self, Vec<u8>, DirectionKeys), HandshakeError> {
        let ClientResumeFlight { state, out, early } = client_resume_start(config, session)?;
        Ok((Self::ServerHelloOrResume(state), out, early))
    }

    /// Takes the next frame from the server; returns the next state and what to send.
    pub fn step(self, typ: FrameType, body: &[u8]) -> Result<(Self, Vec<u8>), HandshakeError> {
        Ok(match self {
            Self::ServerHello(s) => {
                let (next, out) = s.handle(typ, body)?;
                (Self::ServerCertificateVerify(Box::new(next)), out)
            }
            Self::ServerHelloOrResume(s) if ExpectServerResume::is_resumed(typ) => (
                Self::ResumedServerFinished(s.handle_resumed(typ, body)?),
                Vec::new(),
            ),
            Self::ServerHelloOrResume(s) => {
                let (next, out) = s.handle_server_hello(typ, body)?;
                (Self::ServerCertificateVerify(Box::new(next)), out)
            }
            Self::ResumedServerFinished(s) => {
                let (est, out) = s.handle(typ, body)?;
                (Self::Done(Box::new(est)), out)
            }
            Self::ServerCertificateVerify(s) => (
                Self::ServerFinished(Box::new(s.handle(typ, body)?)),
                Vec::new(),
            ),
            Self::ServerFinished(s) => (Self::Done(Box::new(s.handle(typ, body)?)), Vec::new()),
            Self::Done(_) => {
                return Err(HandshakeError::Unexpected {
                    expected: FrameType::Record,
                    got: typ,
                });
            }
        })
    }

    /// The session, once the server proved itself.
    pub fn established(self) -> Option<Established> {
        match self {
            Self::Done(est) => Some(*est),
            _ => None,
        }
    }

    /// True once our own Finished is made and only the server's last flight is due: the
    /// first requests may go now, under [`Self::record_keys`].
    pub fn awaits_server_finished(&self) -> bool {
        matches!(self, Self::ServerCertificateVerify(_))
    }

    /// The record keys (send, receive) of a full handshake once our Finished is made.
    pub fn record_keys(&self) -> Option<(DirectionKeys, DirectionKeys)> {
        match self {
            Self::ServerCertificateVerify(s) => Some(s.record_keys()),
            _ => None,
        }
    }
}

/// Where a server's handshake stands.
pub enum ServerState {
    ClientHello(ExpectClientHello),
    ClientCertificate(Box<ExpectClientCertificate>),
    ClientCertificateVerify(Box<ExpectClientCertificateVerify>),
    ClientFinished(Box<ExpectClientFinished>),
    /// A resumed session: established for sending; the client's early records, then its
    /// Finished, come next.
    ResumedClientFinished(Box<ExpectResumedClientFinished>),
    Done(Box<Established>),
}

impl ServerState {
    pub fn start(config: ServerConfig) -> Self {
        Self::ClientHello(server_start(config))
    }

    /// Takes the next frame from the client; returns the next state and what to send.
    pub fn step(self, typ: FrameType, body: &[u8]) -> Result<(Self, Vec<u8>), HandshakeError> {
        Ok(match self {
            Self::ClientHello(s) => match s.handle_first(typ, body)? {
                ServerFirst::Full(next, out, _) => (Self::ClientCertificate(next), out),
                ServerFirst::Resumed(next, out) => (Self::ResumedClientFinished(next), out),
            },
            Self::ClientCertificate(s) => (
                Self::ClientCertificateVerify(Box::new(s.handle(typ, body)?)),
                Vec::new(),
            ),
            Self::ClientCertificateVerify(s) => (
                Self::ClientFinished(Box::new(s.handle(typ, body)?)),
                Vec::new(),
            ),
            Self::ClientFinished(s) => {
                let (est, out) = s.handle(typ, body)?;
                (Self::Done(Box::new(est)), out)
            }
            Self::ResumedClientFinished(s) => {
                (Self::Done(Box::new(s.handle(typ, body)?)), Vec::new())
            }
            Self::Done(_) => {
                return Err(HandshakeError::Unexpected {
                    expected: FrameType::Record,
                    got: typ,
                });
            }
        })
    }

    /// The client is authenticated (full handshake done, or a ticket accepted): the
    /// admission decision is due, and the server's flight goes out.
    pub fn authenticated(&self) -> Option<&crate::pki::VerifiedCert> {
        match self {
            Self::Done(est) => Some(&est.peer),
            Self::ResumedClientFinished(r) => Some(&r.established.peer),
            _ => None,
        }
    }

    /// The session, once the client confirmed its keys.
    pub fn established(self) -> Option<Established> {
        match self {
            Self::Done(est) => Some(*est),
            _ => None,
        }
    }
}
