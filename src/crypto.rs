//! Thin, named wrappers over the primitives: RSA-PSS and ECDSA P-256 signatures under a
//! context string, and RSA-OAEP key wrapping. The handshake's key schedule is in
//! `handshake/key_schedule.rs`.

use rsa::pss;
use rsa::signature;
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::pki::{PeerKey, PrivateKey};

/// OAEP label for the wrapped session secret: a ciphertext made for another protocol (or
/// another purpose of the same key) does not decrypt here.
pub const OAEP_LABEL: &[u8] = b"minitls v1 key transport";
/// Context strings for transcript signatures, as TLS 1.3 CertificateVerify: a client's
/// signature can never be replayed as a server's, or vice versa.
pub const CLIENT_SIGNATURE_CONTEXT: &[u8] = b"minitls v1, client CertificateVerify";
pub const SERVER_SIGNATURE_CONTEXT: &[u8] = b"minitls v1, server CertificateVerify";
/// Context for the server's signature over a file statement.
pub const FILE_SIGNATURE_CONTEXT: &[u8] = b"minitls v1, signed file statement";
/// Context for the server's signature over the manifest of a directory tree.
pub const MANIFEST_SIGNATURE_CONTEXT: &[u8] = b"minitls v1, signed tree manifest";
/// Context for a client's signature over the statement of a file it uploads (`push`). It
/// differs from every server context, so no server signature (over a file, a manifest or a
/// transcript) can pass for an upload's, and an upload's signature for nothing the server signs.
pub const UPLOAD_SIGNATURE_CONTEXT: &[u8] = b"minitls v1, client-signed upload statement";

/// Length of the client's key-transport secret.
pub const SECRET_LEN: usize = 32;

/// A 32-byte secret: wiped on drop, no Debug or Display.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32(pub [u8; 32]);

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The message actually signed: 64 spaces, the context, a zero byte, then the hash
/// (the TLS 1.3 construction), hashed once more for the prehash API.
fn signed_digest(context: &[u8], hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x20u8; 64]);
    h.update(context);
    h.update([0u8]);
    h.update(hash);
    h.finalize().into()
}

/// A private key ready for repeated signing (RSA-PSS keeps the key's precomputed values).
pub enum Signer {
    Rsa(pss::SigningKey<Sha256>),
    P256(p256::ecdsa::SigningKey),
}

impl Signer {
    pub fn new(key: &PrivateKey) -> Self {
        match key {
            PrivateKey::Rsa(k) => Signer::Rsa(pss::SigningKey::<Sha256>::new(k.clone())),
            PrivateKey::P256(k) => Signer::P256(k.clone()),
        }
    }
}

/// Signs `hash` under `context`: RSA-PSS-SHA256 (salt = 32 bytes) or, for a P-256 client key,
/// ECDSA-SHA256 (the 64-byte r || s form), over the same message.
pub fn sign(key: &Signer, context: &[u8], hash: &[u8; 32]) -> Result<Vec<u8>, signature::Error> {
    let digest = signed_digest(context, hash);
    match key {
        Signer::Rsa(k) => Ok(Box::<[u8]>::from(k.sign_prehash(&digest)?).into_vec()),
        Signer::P256(k) => {
            let sig: p256::ecdsa::Signature = k.sign_prehash(&digest)?;
            Ok(sig.to_bytes().to_vec())
        }
    }
}

/// Verifies a signature made by [`sign`] with the key of the same kind. Any malformed
/// signature is simply `false`.
pub fn verify(key: &PeerKey, context: &[u8], hash: &[u8; 32], signature: &[u8]) -> bool {
    let digest = signed_digest(context, hash);
    match key {
        PeerKey::Rsa(k) => {
            let Ok(sig) = pss::Signature::try_from(signature) else {
                return false;
            };
            pss::VerifyingKey::<Sha256>::new(k.clone())
                .verify_prehash(&digest, &sig)
                .is_ok()
        }
        PeerKey::P256(k) => {
            let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else {
                return false;
            };
            k.verify_prehash(&digest, &sig).is_ok()
        }
    }
}

/// Wraps the client's secret to the server's key with RSA-OAEP-SHA256.
pub fn wrap_secret(key: &RsaPublicKey, secret: &Secret32) -> Result<Vec<u8>, rsa::Error> {
    key.encrypt(
        &mut rand::rng(),
        Oaep::<Sha256>::new_with_label(OAEP_LABEL),
        &secret.0,
    )
}

/// Unwraps with blinding. On **any** failure returns a fresh random secret instead of an
/// error (implicit rejection, as TLS does for RSA key exchange): the handshake then fails at
/// the Finished check exactly as it would for a wrong MAC, so the peer learns nothing about
/// why. The `rsa` crate's decryption is not constant-time (RUSTSEC-2023-0071), which is why
/// the server only gets here after the client's certificate and signature verified.
pub fn unwrap_secret(key: &RsaPrivateKey, wrapped: &[u8]) -> Secret32 {
    let mut fallback = Secret32([0u8; 32]);
    rand::fill(&mut fallback.0[..]);
    match key.decrypt_blinded(
        &mut rand::rng(),
        Oaep::<Sha256>::new_with_label(OAEP_LABEL),
        wrapped,
    ) {
        Ok(mut pt) if pt.len() == SECRET_LEN => {
            let mut s = Secret32([0u8; 32]);
            s.0.copy_from_slice(&pt);
            pt.zeroize();
            s
        }
        Ok(mut pt) => {
            pt.zeroize();
            fallback
        }
        Err(_) => fallback,
    }
}
