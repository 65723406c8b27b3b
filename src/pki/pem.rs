//! PEM text <-> DER bytes for certificates and private keys (RSA: PKCS#8 and PKCS#1; EC
//! P-256 for client keys: PKCS#8 and SEC1).
//!
//! Finding the blocks is ours: it tolerates the explanatory text that `openssl x509 -text` and
//! others put around blocks, insists on exactly one block of the kind asked for, and gives the
//! encrypted-key hint. Encoding and decoding each block (RFC 7468, constant-time base64) is
//! `pem-rfc7468`'s, into buffers that are wiped on drop (they may hold private keys).

use pem_rfc7468::LineEnding;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

use super::error::PkiError;
use super::identity::PrivateKey;

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

/// One decoded `-----BEGIN label-----` ... `-----END label-----` block.
struct PemBlock {
    label: String,
    der: Zeroizing<Vec<u8>>,
}

/// Encodes DER bytes as one PEM block with the given label, lines of 64 characters, LF endings
/// (RFC 7468, by `pem-rfc7468`, whose base64 is constant-time).
pub(crate) fn encode_pem(label: &str, der: &[u8]) -> String {
    // Only fails for labels that are not RFC 7468 labels; ours are constants.
    pem_rfc7468::encode_string(label, LineEnding::LF, der)
        .expect("the PEM labels minitls writes are valid RFC 7468 labels")
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
    if is_one_der_sequence(bytes) {
        Ok(vec![bytes.to_vec()])
    } else if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| PkiError::Pem("the PEM text is not UTF-8".into()))?;
        let certs = decode_blocks(text, CERTIFICATE_LABEL)?;
        if certs.is_empty() {
            return Err(PkiError::Pem("no CERTIFICATE block found".into()));
        }
        Ok(certs)
    } else {
        Err(PkiError::Pem(
            "neither PEM text with a CERTIFICATE block nor a DER certificate".into(),
        ))
    }
}

/// Whether `bytes` is exactly one DER SEQUENCE (tag 0x30 and a length that covers the rest):
/// how binary DER is told from PEM text, which may contain anything around its blocks.
pub(crate) fn is_one_der_sequence(bytes: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (bytes.first(), bytes.get(1)) else {
        return false;
    };
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || bytes.len() < 2 + n {
            return false;
        }
        let len = bytes[2..2 + n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    header.checked_add(len) == Some(bytes.len())
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
    let block = single_key_block(pem)?;
    match block.label.as_str() {
        PKCS8_KEY_LABEL => {
            if let Some(kind) = non_rsa_pkcs8_kind(&block.der) {
                return Err(PkiError::BadKey(format!(
                    "it is {kind}; minitls needs an RSA private key (2048 to 8192 bits)"
                )));
            }
            rsa_pkcs8(&block.der)
        }
        PKCS1_KEY_LABEL => rsa_pkcs1(&block.der),
        ENCRYPTED_KEY_LABEL => Err(encrypted_key_error()),
        "EC PRIVATE KEY" => Err(PkiError::BadKey(
            "it is an EC key; minitls needs an RSA private key (2048 to 8192 bits)".into(),
        )),
        other => Err(PkiError::BadKey(format!(
            "{other} is not supported; minitls needs an RSA key (PRIVATE KEY or RSA PRIVATE KEY)"
        ))),
    }
}

/// Reads the private key of a leaf certificate: RSA as [`private_key_from_pem`] does, or an
/// EC key on P-256 (a client's), from PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey`
/// writes) or SEC1 (`BEGIN EC PRIVATE KEY`, what `openssl ecparam -genkey` writes). Whether
/// the key suits its role is the certificate's check ([`super::verify_chain`]).
pub fn leaf_private_key_from_pem(pem: &str) -> Result<PrivateKey, PkiError> {
    let block = single_key_block(pem)?;
    let unsupported = |kind: &str| {
        PkiError::BadKey(format!(
            "it is {kind}; minitls reads RSA keys of 2048 to 8192 bits and, for clients, EC keys \
             on P-256"
        ))
    };
    match block.label.as_str() {
        PKCS8_KEY_LABEL => match non_rsa_pkcs8_kind(&block.der) {
            None => rsa_pkcs8(&block.der).map(PrivateKey::Rsa),
            Some(kind) if kind == P256_KIND => p256::SecretKey::from_pkcs8_der(&block.der)
                .map(|k| PrivateKey::P256(k.into()))
                .map_err(|e| PkiError::BadKey(format!("not a PKCS#8 EC P-256 private key: {e}"))),
            Some(kind) => Err(unsupported(&kind)),
        },
        PKCS1_KEY_LABEL => rsa_pkcs1(&block.der).map(PrivateKey::Rsa),
        ENCRYPTED_KEY_LABEL => Err(encrypted_key_error()),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&block.der)
            .map(|k| PrivateKey::P256(k.into()))
            .map_err(|_| unsupported("an EC key that is not on P-256, or not a SEC1 EC key")),
        other => Err(PkiError::BadKey(format!(
            "{other} is not supported; minitls reads PRIVATE KEY, RSA PRIVATE KEY and EC PRIVATE \
             KEY blocks"
        ))),
    }
}

/// The one private key block of `pem` (certificates beside it are ignored).
fn single_key_block(pem: &str) -> Result<PemBlock, PkiError> {
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
    Ok(block)
}

fn rsa_pkcs8(der: &[u8]) -> Result<RsaPrivateKey, PkiError> {
    RsaPrivateKey::from_pkcs8_der(der)
        .map_err(|e| PkiError::BadKey(format!("not a PKCS#8 RSA private key: {e}")))
}

fn rsa_pkcs1(der: &[u8]) -> Result<RsaPrivateKey, PkiError> {
    RsaPrivateKey::from_pkcs1_der(der)
        .map_err(|e| PkiError::BadKey(format!("not a PKCS#1 RSA private key: {e}")))
}

/// How [`non_rsa_pkcs8_kind`] names a P-256 key.
const P256_KIND: &str = "an EC key on P-256";

/// What a PKCS#8 key that is not RSA holds, in words (`None` for RSA or unparseable input,
/// which the RSA decoder then reports).
fn non_rsa_pkcs8_kind(der: &[u8]) -> Option<String> {
    let info = rsa::pkcs8::PrivateKeyInfoRef::try_from(der).ok()?;
    let oid = info.algorithm.oid.to_string();
    let curve = info.algorithm.parameters_oid().ok().map(|c| c.to_string());
    Some(match (oid.as_str(), curve.as_deref()) {
        ("1.2.840.113549.1.1.1", _) => return None,
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => P256_KIND.into(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "an EC key on P-384".into(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.35")) => "an EC key on P-521".into(),
        ("1.2.840.10045.2.1", _) => "an EC key".into(),
        ("1.3.101.112", _) => "an Ed25519 key".into(),
        ("1.3.101.113", _) => "an Ed448 key".into(),
        ("1.2.840.113549.1.1.10", _) => "an RSA-PSS key".into(),
        (other, _) => format!("a key of an unknown kind (object identifier {other})"),
    })
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
        let der = decode_block(label, &body)?;
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

/// Decodes one block's base64 text (whitespace already removed from each line) with
/// `pem-rfc7468`: constant-time base64 (`base64ct`), since the block may be a private key.
/// The text is re-wrapped at 64 characters first, so blocks written with other line widths
/// (76 is common) are read too; re-wrapping depends only on the length, never on the data.
fn decode_block(label: &str, body: &str) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    let bad = || PkiError::Pem(format!("the {label} block is not valid base64"));
    if !body.is_ascii() {
        return Err(bad());
    }
    let mut doc = Zeroizing::new(String::with_capacity(
        body.len() + body.len() / PEM_LINE_LEN + 2 * label.len() + 40,
    ));
    doc.push_str("-----BEGIN ");
    doc.push_str(label);
    doc.push_str("-----\n");
    for line in body.as_bytes().chunks(PEM_LINE_LEN) {
        // ASCII checked above, so every chunk is valid UTF-8.
        doc.push_str(std::str::from_utf8(line).map_err(|_| bad())?);
        doc.push('\n');
    }
    doc.push_str("-----END ");
    doc.push_str(label);
    doc.push_str("-----\n");
    let (_, der) = pem_rfc7468::decode_vec(doc.as_bytes()).map_err(|_| bad())?;
    Ok(Zeroizing::new(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_every_length_and_reads_other_line_widths() {
        for len in 1..200 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let pem = encode_pem("X", &data);
            assert_eq!(decode_blocks(&pem, "X").unwrap(), vec![data.clone()]);
            // The same base64 wrapped at 76 characters, as some tools write it.
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let mut wide = String::from("-----BEGIN X-----\n");
            for chunk in b64.as_bytes().chunks(76) {
                wide.push_str(std::str::from_utf8(chunk).unwrap());
                wide.push('\n');
            }
            wide.push_str("-----END X-----\n");
            assert_eq!(decode_blocks(&wide, "X").unwrap(), vec![data]);
        }
        assert_eq!(
            encode_pem("X", b"foobar"),
            "-----BEGIN X-----\nZm9vYmFy\n-----END X-----\n"
        );
    }

    #[test]
    fn der_is_told_from_pem_by_its_structure_not_by_its_first_byte() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        assert!(is_one_der_sequence(&der));
        assert_eq!(certificates_from_bytes(&der).unwrap(), vec![der.clone()]);
        // PEM text that happens to start with '0' (0x30) is still PEM.
        let text = format!("0 explanatory text\n{}", der_to_pem(&der));
        assert!(!is_one_der_sequence(text.as_bytes()));
        assert_eq!(certificates_from_bytes(text.as_bytes()).unwrap(), vec![der]);
        assert!(!is_one_der_sequence(&[0x30, 0x82, 0xff]));
        assert!(!is_one_der_sequence(&[0x30, 0x05, 0x00]));
    }

    #[test]
    fn pem_rejects_bad_padding_and_characters() {
        for body in ["Zm8", "Z===", "Zm8=Zm8=", "Zm9=", "Zm*v", "Zm9vYmFyé"] {
            let pem = format!("-----BEGIN X-----\n{body}\n-----END X-----\n");
            assert!(
                matches!(decode_blocks(&pem, "X"), Err(PkiError::Pem(_))),
                "{body}"
            );
        }
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
