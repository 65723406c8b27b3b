//! The handshake's key schedule (HKDF-SHA-256), of full and resumed handshakes, and the
//! Finished MACs. PROTOCOL.md §2 ("Key schedule") and §2.5 write it out.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::crypto::Secret32;
use crate::record::DirectionKeys;

/// HKDF-Expand labels of the key schedule.
pub const LABEL_C2S_KEY: &[u8] = b"minitls v1 c2s key";
pub const LABEL_C2S_IV: &[u8] = b"minitls v1 c2s iv";
pub const LABEL_S2C_KEY: &[u8] = b"minitls v1 s2c key";
pub const LABEL_S2C_IV: &[u8] = b"minitls v1 s2c iv";
pub const LABEL_CLIENT_FINISHED: &[u8] = b"minitls v1 client finished";
pub const LABEL_SERVER_FINISHED: &[u8] = b"minitls v1 server finished";
/// Labels of session resumption (protocol version 3).
pub const LABEL_RESUMPTION: &[u8] = b"minitls v3 resumption";
pub const LABEL_BINDER: &[u8] = b"minitls v3 binder";
pub const LABEL_EARLY_KEY: &[u8] = b"minitls v3 early c2s key";
pub const LABEL_EARLY_IV: &[u8] = b"minitls v3 early c2s iv";
pub const LABEL_RESUMED: &[u8] = b"minitls v3 resumed handshake";

/// Everything the handshake derives from the session secrets.
pub struct KeySchedule {
    pub c2s: DirectionKeys,
    pub s2c: DirectionKeys,
    pub client_finished: Secret32,
    pub server_finished: Secret32,
    /// The secret a session ticket stands for: a later connection resumes with it (mixed with
    /// a fresh X25519 exchange). Both ends derive it; the server seals it into the ticket.
    pub resumption: Secret32,
}

/// HKDF-SHA-256: extract over `transport secret || x25519 shared secret`, salted with the
/// transcript hash, then expand one key and IV per direction and one Finished key per side.
pub fn derive_keys(transport: &Secret32, dh: &Secret32, transcript: &[u8; 32]) -> KeySchedule {
    let mut ikm = [0u8; 64];
    ikm[..32].copy_from_slice(&transport.0);
    ikm[32..].copy_from_slice(&dh.0);
    let hk = Hkdf::<Sha256>::new(Some(transcript), &ikm);
    ikm.zeroize();
    let expand = |label: &[u8], out: &mut [u8]| {
        hk.expand(label, out)
            .expect("outputs of at most 32 bytes are far below HKDF's 255*32 limit");
    };
    let mut ks = KeySchedule {
        c2s: DirectionKeys {
            key: [0; 32],
            iv: [0; 12],
        },
        s2c: DirectionKeys {
            key: [0; 32],
            iv: [0; 12],
        },
        client_finished: Secret32([0; 32]),
        server_finished: Secret32([0; 32]),
        resumption: Secret32([0; 32]),
    };
    expand(LABEL_C2S_KEY, &mut ks.c2s.key);
    expand(LABEL_C2S_IV, &mut ks.c2s.iv);
    expand(LABEL_S2C_KEY, &mut ks.s2c.key);
    expand(LABEL_S2C_IV, &mut ks.s2c.iv);
    expand(LABEL_CLIENT_FINISHED, &mut ks.client_finished.0);
    expand(LABEL_SERVER_FINISHED, &mut ks.server_finished.0);
    expand(LABEL_RESUMPTION, &mut ks.resumption.0);
    ks
}

/// HKDF-Expand of `secret` (as the PRK of an extract with an all-zero salt) under `label`.
fn expand_from(secret: &Secret32, label: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::new(None, &secret.0)
        .expand(label, out)
        .expect("outputs of at most 32 bytes are far below HKDF's 255*32 limit");
}

/// The key of a ResumeHello's binder (an HMAC over the frame before it): proves the client
/// holds the ticket's secret.
pub fn binder_key(resumption: &Secret32) -> Secret32 {
    let mut k = Secret32([0; 32]);
    expand_from(resumption, LABEL_BINDER, &mut k.0);
    k
}

/// Keys of a returning client's early data: the ticket's secret and the ResumeHello's hash
/// (binder included) alone. No forward secrecy for these few bytes of read requests, as with
/// TLS 1.3's early data; everything after is keyed with a fresh X25519 exchange too.
pub fn early_keys(resumption: &Secret32, transcript: &[u8; 32]) -> DirectionKeys {
    let hk = Hkdf::<Sha256>::new(Some(transcript), &resumption.0);
    let mut keys = DirectionKeys {
        key: [0; 32],
        iv: [0; 12],
    };
    let expand = |label: &[u8], out: &mut [u8]| {
        hk.expand(label, out)
            .expect("outputs of at most 32 bytes are far below HKDF's 255*32 limit");
    };
    expand(LABEL_EARLY_KEY, &mut keys.key);
    expand(LABEL_EARLY_IV, &mut keys.iv);
    keys
}

/// What stands in for the RSA-transported secret in a resumed handshake's [`derive_keys`]
/// (mixed there with the fresh X25519 secret, salted with the resumed transcript).
pub fn resumed_transport(resumption: &Secret32) -> Secret32 {
    let mut k = Secret32([0; 32]);
    expand_from(resumption, LABEL_RESUMED, &mut k.0);
    k
}

/// HMAC-SHA-256 of the transcript hash under a Finished key.
pub fn finished_mac(key: &Secret32, transcript: &[u8; 32]) -> [u8; 32] {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0).expect("HMAC accepts keys of any length");
    m.update(transcript);
    m.finalize().into_bytes().into()
}

/// Constant-time check of a received Finished MAC.
pub fn finished_mac_matches(key: &Secret32, transcript: &[u8; 32], received: &[u8; 32]) -> bool {
    finished_mac(key, transcript).ct_eq(received).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_mac_rejects_any_other_value() {
        let k = Secret32([3; 32]);
        let th = [4; 32];
        let mac = finished_mac(&k, &th);
        assert!(finished_mac_matches(&k, &th, &mac));
        let mut bad = mac;
        bad[31] ^= 1;
        assert!(!finished_mac_matches(&k, &th, &bad));
        assert!(!finished_mac_matches(&Secret32([5; 32]), &th, &mac));
        assert!(!finished_mac_matches(&k, &[0; 32], &mac));
    }

    #[test]
    fn key_schedule_depends_on_every_input_and_separates_directions() {
        let a = derive_keys(&Secret32([1; 32]), &Secret32([2; 32]), &[3; 32]);
        let b = derive_keys(&Secret32([9; 32]), &Secret32([2; 32]), &[3; 32]);
        let c = derive_keys(&Secret32([1; 32]), &Secret32([9; 32]), &[3; 32]);
        let d = derive_keys(&Secret32([1; 32]), &Secret32([2; 32]), &[9; 32]);
        assert_ne!(a.c2s.key, a.s2c.key);
        assert_ne!(a.c2s.iv, a.s2c.iv);
        assert_ne!(a.client_finished.0, a.server_finished.0);
        for other in [&b, &c, &d] {
            assert_ne!(a.c2s.key, other.c2s.key);
            assert_ne!(a.s2c.key, other.s2c.key);
        }
    }
}
