//! Our own certificate and private key, loaded and checked to belong together.

use std::fmt;

use rsa::RsaPrivateKey;
use rsa::traits::PublicKeyParts;

use super::error::PkiError;
use super::pem::{pem_to_der, private_key_from_pem};
use super::verify::{MAX_RSA_BITS, MIN_RSA_BITS, parse_single, rsa_public_key};

/// Our own certificate and the private key for it.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, DER, as sent to the peer.
    pub cert_der: Vec<u8>,
    /// The private key matching the certificate's public key.
    pub key: RsaPrivateKey,
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
    /// Loads a PEM certificate and a PEM private key (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1
    /// `BEGIN RSA PRIVATE KEY`); fails if the key does not belong to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, PkiError> {
        let cert_der = pem_to_der(cert_pem)?;
        let key = private_key_from_pem(key_pem)?;
        Identity::from_parts(cert_der, key)
    }

    /// Pairs a DER certificate with its key, checking the two belong together and that the
    /// certificate carries an RSA key of an acceptable size.
    pub fn from_parts(cert_der: Vec<u8>, key: RsaPrivateKey) -> Result<Identity, PkiError> {
        let cert = parse_single(&cert_der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let cert_key = rsa_public_key(cert.public_key())
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let bits = key.n().bits_vartime() as usize;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(PkiError::BadKey(format!(
                "the RSA key has {bits} bits; 2048 to 8192 are accepted"
            )));
        }
        if &cert_key != key.as_public_key() {
            return Err(PkiError::KeyMismatch);
        }
        Ok(Identity {
            cert_der,
            key,
            chain: Vec::new(),
        })
    }
}
