//! PEM text <-> DER bytes for certificates and RSA private keys (PKCS#8 and PKCS#1).
//!
//! A small decoder of our own rather than a PEM crate: it tolerates the explanatory text that
//! `openssl x509 -text` and others put around blocks, insists on exactly one block of the kind
//! asked for, and decodes into buffers that are wiped on drop (they may hold private keys).

use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

use super::error::PkiError;

/// PEM label of an X.509 certificate.
pub const CERTIFICATE_LABEL: &str = "CERTIFICATE";
/// PEM label of a certificate revocation list (`openssl crl` writes this).
pub const X509_CRL_LABEL: &str = "X509 CRL";
/// PEM label of an unencrypted PKCS#8 private key (what minitls writes).
pub const PKCS8_KEY_LABEL: &str = "PRIVATE KEY";
/// PEM label of a PKCS#1 RSA private key (`openssl rsa -traditional`).
pub const PKCS1_KEY_LABEL: &str = "RSA PRIVATE KEY";
/// PEM label of an encrypted PKCS#8 private key, which we refuse with a hint.
const ENCRYPTED_KEY_LABEL: &str = "ENCRYPTED PRIVATE KEY";
/// Base64 characters per PEM line (RFC 7468).
const PEM_LINE_LEN: usize = 64;
/// Largest PEM input accepted; certificates and keys are a few KiB.
const MAX_PEM_LEN: usize = 1 << 20;

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// One decoded `-----BEGIN label-----` ... `-----END label-----` block.
struct PemBlock {
    label: String,
    der: Zeroizing<Vec<u8>>,
}

/// Encodes DER bytes as one PEM block with the given label, lines of 64 characters, LF endings.
pub(crate) fn encode_pem(label: &str, der: &[u8]) -> String {
    let b64 = Zeroizing::new(base64_encode(der));
    let mut out =
        String::with_capacity(b64.len() + b64.len() / PEM_LINE_LEN + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(PEM_LINE_LEN) {
        // The base64 alphabet is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).expect("base64 output is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Encodes a DER certificate as a PEM `CERTIFICATE` block.
pub fn der_to_pem(der: &[u8]) -> String {
    encode_pem(CERTIFICATE_LABEL, der)
}

/// Decodes PEM text holding exactly one `CERTIFICATE` block (other blocks and text are ignored).
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let blocks = parse_blocks(pem)?;
    let mut certs = blocks.into_iter().filter(|b| b.label == CERTIFICATE_LABEL);
    let first = certs
        .next()
        .ok_or_else(|| PkiError::Pem("no CERTIFICATE block found".into()))?;
    let extra = certs.count();
    if extra > 0 {
        return Err(PkiError::Pem(format!(
            "found {} CERTIFICATE blocks, expected exactly one",
            extra + 1
        )));
    }
    Ok(first.der.to_vec())
}

/// Decodes every block labelled `label` in `text` (other blocks and text are ignored).
pub(crate) fn decode_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    Ok(parse_blocks(text)?
        .into_iter()
        .filter(|b| b.label == label)
        .map(|b| b.der.to_vec())
        .collect())
}

/// Every certificate in `bytes`: the CERTIFICATE blocks of PEM text (a bundle or chain file),
/// or one DER certificate. Nothing is parsed beyond the encoding.
pub fn certificates_from_bytes(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| PkiError::Pem("the PEM text is not UTF-8".into()))?;
        let certs = decode_blocks(text, CERTIFICATE_LABEL)?;
        if certs.is_empty() {
            return Err(PkiError::Pem("no CERTIFICATE block found".into()));
        }
        Ok(certs)
    } else if bytes.first() == Some(&0x30) {
        Ok(vec![bytes.to_vec()])
    } else {
        Err(PkiError::Pem(
            "neither PEM text with a CERTIFICATE block nor a DER certificate".into(),
        ))
    }
}

/// Serialises a private key as unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`).
pub fn private_key_to_pem(key: &RsaPrivateKey) -> Result<String, PkiError> {
    let doc = key
        .to_pkcs8_der()
        .map_err(|e| PkiError::BadKey(format!("cannot encode as PKCS#8: {e}")))?;
    Ok(encode_pem(PKCS8_KEY_LABEL, doc.as_bytes()))
}

/// Parses one RSA private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
/// (`BEGIN RSA PRIVATE KEY`). Certificates in the same text are ignored.
pub fn private_key_from_pem(pem: &str) -> Result<RsaPrivateKey, PkiError> {
    let blocks = parse_blocks(pem)?;
    let mut keys = blocks
        .into_iter()
        .filter(|b| b.label.ends_with("PRIVATE KEY"));
    let block = keys
        .next()
        .ok_or_else(|| PkiError::Pem("no PRIVATE KEY or RSA PRIVATE KEY block found".into()))?;
    if keys.next().is_some() {
        return Err(PkiError::Pem(
            "found more than one private key block, expected exactly one".into(),
        ));
    }
    match block.label.as_str() {
        PKCS8_KEY_LABEL => RsaPrivateKey::from_pkcs8_der(&block.der)
            .map_err(|e| PkiError::BadKey(format!("not a PKCS#8 RSA private key: {e}"))),
        PKCS1_KEY_LABEL => RsaPrivateKey::from_pkcs1_der(&block.der)
            .map_err(|e| PkiError::BadKey(format!("not a PKCS#1 RSA private key: {e}"))),
        ENCRYPTED_KEY_LABEL => Err(encrypted_key_error()),
        other => Err(PkiError::BadKey(format!(
            "{other} is not supported; minitls needs an RSA key (PRIVATE KEY or RSA PRIVATE KEY)"
        ))),
    }
}

fn encrypted_key_error() -> PkiError {
    PkiError::BadKey(
        "the key is encrypted; minitls reads unencrypted keys only \
         (decrypt it with `openssl pkey -in KEY -out KEY.plain`)"
            .into(),
    )
}

/// Finds and decodes every PEM block in `text`.
fn parse_blocks(text: &str) -> Result<Vec<PemBlock>, PkiError> {
    if text.len() > MAX_PEM_LEN {
        return Err(PkiError::Pem(format!(
            "input is {} bytes, more than the {MAX_PEM_LEN} accepted",
            text.len()
        )));
    }
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = boundary_label(line, "-----BEGIN ") else {
            continue;
        };
        let mut body = Zeroizing::new(String::new());
        let mut ended = false;
        for line in lines.by_ref() {
            if let Some(end_label) = boundary_label(line, "-----END ") {
                if end_label != label {
                    return Err(PkiError::Pem(format!(
                        "BEGIN {label} is closed by END {end_label}"
                    )));
                }
                ended = true;
                break;
            }
            if line.contains(':') {
                // RFC 1421 headers ("Proc-Type: 4,ENCRYPTED") only occur in encrypted keys.
                if line.starts_with("Proc-Type:") || line.starts_with("DEK-Info:") {
                    return Err(encrypted_key_error());
                }
                return Err(PkiError::Pem(format!(
                    "unexpected header line inside {label} block"
                )));
            }
            body.push_str(line);
        }
        if !ended {
            return Err(PkiError::Pem(format!(
                "BEGIN {label} without a matching END line"
            )));
        }
        let der = base64_decode(&body)
            .ok_or_else(|| PkiError::Pem(format!("the {label} block is not valid base64")))?;
        if der.is_empty() {
            return Err(PkiError::Pem(format!("the {label} block is empty")));
        }
        blocks.push(PemBlock {
            label: label.to_string(),
            der,
        });
    }
    Ok(blocks)
}

/// Returns the label of a `-----BEGIN X-----` / `-----END X-----` line.
fn boundary_label<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let emit = chunk.len() + 1; // characters carrying data
        for i in 0..4 {
            if i < emit {
                let index = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(BASE64_ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Strict standard base64 with padding; whitespace is ignored. `None` on any other deviation.
fn base64_decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let chars: Zeroizing<Vec<u8>> =
        Zeroizing::new(text.bytes().filter(|c| !c.is_ascii_whitespace()).collect());
    if !chars.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(chars.len() / 4 * 3));
    let quads = chars.len() / 4;
    for (qi, quad) in chars.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && qi + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | base64_value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        let data = &bytes[1..4 - pad];
        // Non-canonical encodings leave stray bits in the padding; reject them.
        if pad > 0 && bytes[4 - pad..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(data);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64_encode(&data);
            assert_eq!(base64_decode(&enc).unwrap().as_slice(), data.as_slice());
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn base64_rejects_bad_padding_and_characters() {
        assert!(base64_decode("Zm8").is_none());
        assert!(base64_decode("Z===").is_none());
        assert!(base64_decode("Zm8=Zm8=").is_none());
        assert!(
            base64_decode("Zm9=").is_none(),
            "non-canonical trailing bits"
        );
        assert!(base64_decode("Zm*v").is_none());
    }

    #[test]
    fn pem_to_der_ignores_surrounding_text_and_round_trips() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = format!(
            "Certificate:\n  stuff: here\n{}trailing\n",
            der_to_pem(&der)
        );
        assert_eq!(pem_to_der(&pem).unwrap(), der);
    }

    #[test]
    fn pem_to_der_requires_exactly_one_certificate() {
        let one = der_to_pem(&[1, 2, 3]);
        assert!(matches!(pem_to_der(""), Err(PkiError::Pem(_))));
        let two = format!("{one}{one}");
        let err = pem_to_der(&two).unwrap_err().to_string();
        assert!(err.contains("expected exactly one"), "{err}");
    }

    #[test]
    fn pem_blocks_must_be_closed_by_their_own_label() {
        let text = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(pem_to_der(text).is_err());
        let open = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(pem_to_der(open).is_err());
    }

    #[test]
    fn encrypted_keys_are_refused_with_a_hint() {
        let text =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = private_key_from_pem(text).unwrap_err().to_string();
        assert!(err.contains("encrypted"), "{err}");
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = private_key_from_pem(legacy).unwrap_err().to_string();
        assert!(err.contains("encrypted"), "{err}");
    }
}
