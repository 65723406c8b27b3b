//! Our own certificate and private key, loaded and checked to belong together.

use std::fmt;

use rsa::RsaPrivateKey;
use rsa::traits::PublicKeyParts;

use super::Role;
use super::error::PkiError;
use super::pem::{leaf_private_key_from_pem, pem_to_der};
use super::verify::{MAX_RSA_BITS, MIN_RSA_BITS, PeerKey, leaf_key, parse_single};

/// Our private key: RSA (a server's must be), or ECDSA P-256 (a client's may be).
#[derive(Clone)]
pub enum PrivateKey {
    Rsa(RsaPrivateKey),
    P256(p256::ecdsa::SigningKey),
}

impl PrivateKey {
    /// The RSA key, if it is one (a server needs it to unwrap the session secret).
    pub fn rsa(&self) -> Option<&RsaPrivateKey> {
        match self {
            PrivateKey::Rsa(k) => Some(k),
            PrivateKey::P256(_) => None,
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PeerKey {
        match self {
            PrivateKey::Rsa(k) => PeerKey::Rsa(k.to_public_key()),
            PrivateKey::P256(k) => PeerKey::P256(*k.verifying_key()),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrivateKey::Rsa(_) => "PrivateKey::Rsa([elided])",
            PrivateKey::P256(_) => "PrivateKey::P256([elided])",
        })
    }
}

impl From<RsaPrivateKey> for PrivateKey {
    fn from(key: RsaPrivateKey) -> Self {
        PrivateKey::Rsa(key)
    }
}

/// Our own certificate and the private key for it.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, DER, as sent to the peer.
    pub cert_der: Vec<u8>,
    /// The private key matching the certificate's public key.
    pub key: PrivateKey,
    /// Intermediate CA certificates (DER) sent after ours, issuer of ours first (a chain
    /// file's certificates after the first); empty when a trust anchor issued ours.
    pub chain: Vec<Vec<u8>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_der_len", &self.cert_der.len())
            .field("chain_len", &self.chain.len())
            .field("key", &"[elided]")
            .finish()
    }
}

impl Identity {
    /// Loads a PEM certificate and a PEM private key (PKCS#8 `BEGIN PRIVATE KEY`, PKCS#1
    /// `BEGIN RSA PRIVATE KEY`, or SEC1 `BEGIN EC PRIVATE KEY` for P-256); fails if the key does
    /// not belong to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, PkiError> {
        let cert_der = pem_to_der(cert_pem)?;
        let key = leaf_private_key_from_pem(key_pem)?;
        Identity::from_parts(cert_der, key)
    }

    /// Pairs a DER certificate with its key, checking the two belong together and that the
    /// certificate carries a key minitls can use: RSA of an accepted size, or EC on P-256
    /// (which only a client may use; the handshake's checks of the role refuse it for a
    /// server).
    pub fn from_parts(cert_der: Vec<u8>, key: impl Into<PrivateKey>) -> Result<Identity, PkiError> {
        let key = key.into();
        let cert = parse_single(&cert_der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let cert_key = leaf_key(cert.public_key(), Role::Client)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        if let PrivateKey::Rsa(rsa) = &key {
            let bits = rsa.n().bits_vartime() as usize;
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(PkiError::BadKey(format!(
                    "the RSA key has {bits} bits; 2048 to 8192 are accepted"
                )));
            }
        }
        if cert_key != key.public_key() {
            return Err(PkiError::KeyMismatch);
        }
        Ok(Identity {
            cert_der,
            key,
            chain: Vec::new(),
        })
    }
}
