//! Session tickets (protocol version 3): what the server remembers of a session, sealed
//! under a key only it holds, so that it keeps no per-session state.
//!
//! A ticket is `nonce (12) || AES-256-GCM(ticket key, nonce, contents, aad)`. The key is made
//! at random when the server starts and lives only in its memory: a restart invalidates every
//! ticket (clients fall back to a full handshake). The contents name the ticket (a random id,
//! for single use), when it was issued and until when it is accepted, the resumption secret,
//! the server certificate it was issued under, and the client's certificate and chain, which
//! are verified again (validity, CRL) at every use.
//!
//! What each check stops is in PROTOCOL.md §2.5.

use std::collections::HashMap;
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::crypto::Secret32;
use crate::wire::{
    Codec, DecodeError, MAX_CERT_LEN, MAX_CHAIN_LEN, MAX_TICKET_LEN, Reader, put_u16, put_u64,
    put_vec_u16,
};

/// How long a ticket is accepted for by default: a returning client within a day skips the
/// RSA operations; certificates that expire sooner cut it short.
pub const DEFAULT_TICKET_LIFETIME: u32 = 24 * 3600;
/// Most used ticket ids the server remembers (each until its ticket expires). When that many
/// unexpired tickets were used, further ones get a full handshake rather than a chance of
/// being accepted twice.
pub const MAX_USED_TICKETS: usize = 100_000;

/// The AAD of every ticket: a ciphertext made for another purpose never opens as a ticket.
const TICKET_AAD: &[u8] = b"minitls v3 session ticket";
/// Version byte of the contents' encoding.
const CONTENTS_VERSION: u8 = 1;

/// What a ticket holds (encrypted; the client never sees it).
#[derive(Clone)]
pub struct TicketContents {
    pub id: [u8; 16],
    pub issued_at: i64,
    /// Accepted until then (Unix seconds): the lifetime, cut at either certificate's end.
    pub expires_at: i64,
    pub resumption: Secret32,
    /// SHA-256 of the server certificate the session was authenticated with.
    pub server_fingerprint: [u8; 32],
    /// The client's certificate (DER) and intermediates, as its full handshake verified them.
    pub client_cert: Vec<u8>,
    pub client_chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TicketContents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketContents")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("resumption", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl PartialEq for TicketContents {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Codec for TicketContents {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(CONTENTS_VERSION);
        out.extend_from_slice(&self.id);
        put_u64(out, self.issued_at as u64);
        put_u64(out, self.expires_at as u64);
        out.extend_from_slice(&self.resumption.0);
        out.extend_from_slice(&self.server_fingerprint);
        put_vec_u16(out, &self.client_cert);
        let count = self.client_chain.len().min(MAX_CHAIN_LEN);
        put_u16(out, count as u16);
        for cert in &self.client_chain[..count] {
            put_vec_u16(out, cert);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.u8("ticket version")? != CONTENTS_VERSION {
            return Err(DecodeError::InvalidValue("ticket version"));
        }
        let id = r.array("ticket id")?;
        let issued_at = r.i64("ticket issue time")?;
        let expires_at = r.i64("ticket expiry")?;
        let resumption = Secret32(r.array("resumption secret")?);
        let server_fingerprint = r.array("server fingerprint")?;
        let client_cert = r.vec_u16(MAX_CERT_LEN, "client certificate")?.to_vec();
        let count = r.u16("client chain")? as usize;
        if count > MAX_CHAIN_LEN {
            return Err(DecodeError::InvalidValue("client chain"));
        }
        let mut client_chain = Vec::with_capacity(count);
        for _ in 0..count {
            client_chain.push(r.vec_u16(MAX_CERT_LEN, "client chain")?.to_vec());
        }
        Ok(Self {
            id,
            issued_at,
            expires_at,
            resumption,
            server_fingerprint,
            client_cert,
            client_chain,
        })
    }
}

/// The server's ticket key and the ids of tickets already used.
pub struct TicketKeys {
    cipher: Aes256Gcm,
    lifetime: u32,
    used: Mutex<HashMap<[u8; 16], i64>>,
    max_used: usize,
}

impl TicketKeys {
    /// A fresh random key; tickets live `lifetime` seconds at most.
    pub fn new(lifetime: u32) -> Self {
        Self::with_capacity(lifetime, MAX_USED_TICKETS)
    }

    /// As [`TicketKeys::new`], remembering at most `max_used` used tickets (tests).
    pub fn with_capacity(lifetime: u32, max_used: usize) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self {
            cipher: Aes256Gcm::new(&(*key).into()),
            lifetime,
            used: Mutex::new(HashMap::new()),
            max_used,
        }
    }

    /// Seconds a new ticket is accepted for, at most.
    pub fn lifetime(&self) -> u32 {
        self.lifetime
    }

    /// Seals `contents` into a ticket; `None` if it would exceed `MAX_TICKET_LEN` (a client
    /// with very large certificates: it makes full handshakes).
    pub fn seal(&self, contents: &TicketContents) -> Option<Vec<u8>> {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce[..]);
        let plain = Zeroizing::new(contents.to_bytes());
        if 12 + plain.len() + 16 > MAX_TICKET_LEN {
            return None;
        }
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: TICKET_AAD,
                },
            )
            .expect("AES-GCM seals any message of a ticket's size");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Some(out)
    }

    /// Opens a ticket this key sealed; `None` for anything else (another server's, an
    /// earlier run's, altered, or garbage), without saying which.
    pub fn open(&self, ticket: &[u8]) -> Option<TicketContents> {
        if ticket.len() < 12 + 16 || ticket.len() > MAX_TICKET_LEN {
            return None;
        }
        let (nonce, ct) = ticket.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ct,
                        aad: TICKET_AAD,
                    },
                )
                .ok()?,
        );
        TicketContents::decode(&plain).ok()
    }

    /// Records that the ticket `id` (accepted until `expires_at`) is being used: `false` if
    /// it was used before, or if the table of used tickets is full of unexpired ones.
    pub fn use_once(&self, id: [u8; 16], expires_at: i64, now: i64) -> bool {
        let mut used = match self.used.lock() {
            Ok(u) => u,
            Err(poisoned) => poisoned.into_inner(),
        };
        if used.contains_key(&id) {
            return false;
        }
        if used.len() >= self.max_used {
            used.retain(|_, until| *until >= now);
            if used.len() >= self.max_used {
                return false;
            }
        }
        used.insert(id, expires_at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents() -> TicketContents {
        TicketContents {
            id: [1; 16],
            issued_at: 10,
            expires_at: 20,
            resumption: Secret32([2; 32]),
            server_fingerprint: [3; 32],
            client_cert: vec![4; 100],
            client_chain: vec![vec![5; 50]],
        }
    }

    #[test]
    fn a_ticket_opens_only_under_its_own_key_and_unaltered() {
        let keys = TicketKeys::new(60);
        let t = keys.seal(&contents()).unwrap();
        assert_eq!(keys.open(&t), Some(contents()));
        assert!(TicketKeys::new(60).open(&t).is_none());
        for i in [0, 12, t.len() / 2, t.len() - 1] {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert!(keys.open(&bad).is_none(), "flip at {i}");
        }
        assert!(keys.open(&t[..t.len() - 1]).is_none());
        assert!(keys.open(&[]).is_none());
    }

    #[test]
    fn a_ticket_is_accepted_once_and_a_full_table_refuses_rather_than_forgets() {
        let keys = TicketKeys::with_capacity(60, 2);
        assert!(keys.use_once([1; 16], 100, 0));
        assert!(!keys.use_once([1; 16], 100, 0));
        assert!(keys.use_once([2; 16], 100, 0));
        // Full of unexpired ids: refused.
        assert!(!keys.use_once([3; 16], 100, 50));
        // Once they expired, room is made; the expired ids' tickets are refused by their
        // expiry anyway.
        assert!(keys.use_once([3; 16], 300, 200));
    }

    #[test]
    fn a_client_chain_too_large_for_a_ticket_gets_none() {
        let mut big = contents();
        big.client_cert = vec![1; MAX_CERT_LEN];
        big.client_chain = vec![vec![2; MAX_CERT_LEN]; MAX_CHAIN_LEN];
        assert!(TicketKeys::new(60).seal(&big).is_none());
    }

    #[test]
    fn contents_decoding_bounds_every_field() {
        let mut bytes = contents().to_bytes();
        assert_eq!(TicketContents::decode(&bytes).unwrap(), contents());
        bytes.push(0);
        assert!(TicketContents::decode(&bytes).is_err());
        let mut wrong_version = contents().to_bytes();
        wrong_version[0] = 9;
        assert!(TicketContents::decode(&wrong_version).is_err());
        for n in 0..contents().to_bytes().len() {
            assert!(TicketContents::decode(&contents().to_bytes()[..n]).is_err());
        }
    }
}
