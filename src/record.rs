//! The record layer: AES-256-GCM framing with per-direction keys and sequence-number nonces.
//!
//! A record is a frame `0x17 | len: u32 | ciphertext || tag`. The plaintext is
//! `inner type: u8 || payload`. The 5-byte header is the AAD, so type and length are
//! authenticated. The nonce is the direction's 12-byte base XOR the 64-bit record sequence
//! number (big endian, in the last 8 bytes); the sequence is implicit, so a dropped, replayed or
//! reordered record fails to open. This module knows nothing of handshakes: it is handed keys.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::wire::{FRAME_HEADER_LEN, FrameHeader, FrameType, MAX_RECORD_PAYLOAD, TAG_LEN};

/// AES-GCM's safe data volume under one key is about 2^38 bytes (RFC 8446 §5.5 allows
/// 2^24.5 records of 2^14 bytes); a connection ends before it sends more than this.
pub const MAX_BYTES_PER_KEY: u64 = 1 << 38;

/// Key and nonce base for one direction. Wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DirectionKeys {
    pub key: [u8; 32],
    pub iv: [u8; 12],
}

/// Opening failures. `BadRecord` is deliberately one error for every authentication failure.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record failed authentication (altered, replayed, reordered or dropped data)")]
    BadRecord,
    #[error("record too short")]
    TooShort,
    #[error("record type is not an encrypted record")]
    NotARecord,
    #[error("payload of {0} bytes is larger than a record can carry")]
    PayloadTooLarge(usize),
    #[error("key usage limit reached on this connection; start a new connection")]
    KeyExhausted,
}

fn nonce_for(iv: &[u8; 12], seq: u64) -> Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    Nonce::from(n)
}

struct State {
    cipher: Aes256Gcm,
    iv: [u8; 12],
    seq: u64,
    bytes: u64,
    /// `Record`, or `EarlyRecord` for a returning client's early data: the frame type is in
    /// the header, which is the AAD, so one kind cannot pass for the other.
    frame: FrameType,
}

impl State {
    fn new(keys: &DirectionKeys, frame: FrameType) -> Self {
        Self {
            cipher: Aes256Gcm::new(&keys.key.into()),
            iv: keys.iv,
            seq: 0,
            bytes: 0,
            frame,
        }
    }

    /// Reserves the next sequence number for a record of `len` bytes.
    fn next(&mut self, len: usize) -> Result<u64, RecordError> {
        let bytes = self.bytes.saturating_add(len as u64);
        if bytes > MAX_BYTES_PER_KEY || self.seq == u64::MAX {
            return Err(RecordError::KeyExhausted);
        }
        self.bytes = bytes;
        let s = self.seq;
        self.seq += 1;
        Ok(s)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.iv.zeroize();
    }
}

/// Seals outgoing records for one direction.
pub struct Sealer(State);

impl Sealer {
    pub fn new(keys: &DirectionKeys) -> Self {
        Self(State::new(keys, FrameType::Record))
    }

    /// Seals a returning client's early data (`EarlyRecord` frames).
    pub fn early(keys: &DirectionKeys) -> Self {
        Self(State::new(keys, FrameType::EarlyRecord))
    }

    /// Appends one complete record frame carrying `payload` to `out`.
    pub fn seal(
        &mut self,
        inner: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if payload.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge(payload.len()));
        }
        self.seal_filled(inner, payload.len(), out, true, |buf| {
            buf.copy_from_slice(payload);
            Ok::<_, std::convert::Infallible>(buf.len())
        })
        .map(|_| ())
    }

    /// Appends one record whose payload `fill` writes straight into `out` (at most `max`
    /// bytes; it returns how many it wrote), so a file is read into the buffer it is
    /// encrypted in, with no copy in between. Nothing is appended, and no sequence number
    /// is used, if `fill` fails or writes nothing. The outer error is the record layer's,
    /// the inner one `fill`'s.
    pub fn seal_with<E>(
        &mut self,
        inner: u8,
        max: usize,
        out: &mut Vec<u8>,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<usize, E>, RecordError> {
        self.seal_filled(inner, max, out, false, fill)
    }

    /// Both of the above; `allow_empty` makes a record of an empty payload (Close, ListEnd).
    fn seal_filled<E>(
        &mut self,
        inner: u8,
        max: usize,
        out: &mut Vec<u8>,
        allow_empty: bool,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<usize, E>, RecordError> {
        if max > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge(max));
        }
        let start = out.len();
        let payload_at = start + FRAME_HEADER_LEN + 1;
        out.resize(payload_at + max, 0);
        let n = match fill(&mut out[payload_at..]) {
            Ok(n) if n > 0 || allow_empty => n.min(max),
            other => {
                out.truncate(start);
                return Ok(other);
            }
        };
        out.truncate(payload_at + n);
        let body_len = 1 + n + TAG_LEN;
        let seq = match self.0.next(body_len) {
            Ok(s) => s,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        let header = FrameHeader::encode(self.0.frame, body_len);
        out[start..start + FRAME_HEADER_LEN].copy_from_slice(&header);
        out[start + FRAME_HEADER_LEN] = inner;
        let nonce = nonce_for(&self.0.iv, seq);
        let tag = self
            .0
            .cipher
            .encrypt_inout_detached(
                &nonce,
                &header,
                (&mut out[start + FRAME_HEADER_LEN..]).into(),
            )
            .map_err(|_| RecordError::PayloadTooLarge(n))?;
        out.extend_from_slice(&tag);
        Ok(Ok(n))
    }
}

/// Opens incoming records for one direction, strictly in order.
pub struct Opener(State);

impl Opener {
    pub fn new(keys: &DirectionKeys) -> Self {
        Self(State::new(keys, FrameType::Record))
    }

    /// Opens a returning client's early data (`EarlyRecord` frames).
    pub fn early(keys: &DirectionKeys) -> Self {
        Self(State::new(keys, FrameType::EarlyRecord))
    }

    /// Decrypts a record in place. `header` is the frame header as received (it is the AAD),
    /// `body` its body. Returns the inner type and the payload, a sub-slice of `body`.
    pub fn open<'a>(
        &mut self,
        header: &[u8; FRAME_HEADER_LEN],
        body: &'a mut [u8],
    ) -> Result<(u8, &'a [u8]), RecordError> {
        if header[0] != self.0.frame as u8 {
            return Err(RecordError::NotARecord);
        }
        if body.len() < 1 + TAG_LEN {
            return Err(RecordError::TooShort);
        }
        let seq = self.0.next(body.len())?;
        let (ct, tag) = body.split_at_mut(body.len() - TAG_LEN);
        let tag = Tag::try_from(&*tag).map_err(|_| RecordError::TooShort)?;
        let nonce = nonce_for(&self.0.iv, seq);
        self.0
            .cipher
            .decrypt_inout_detached(&nonce, header, ct.into(), &tag)
            .map_err(|_| RecordError::BadRecord)?;
        let (inner, payload) = ct.split_first().ok_or(RecordError::TooShort)?;
        Ok((*inner, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> DirectionKeys {
        DirectionKeys {
            key: [b; 32],
            iv: [b ^ 0x5a; 12],
        }
    }

    fn split(frame: &[u8]) -> ([u8; FRAME_HEADER_LEN], Vec<u8>) {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(&frame[..FRAME_HEADER_LEN]);
        (h, frame[FRAME_HEADER_LEN..].to_vec())
    }

    fn seal_n(n: usize) -> Vec<Vec<u8>> {
        let mut s = Sealer::new(&keys(1));
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                s.seal(3, format!("record {i}").as_bytes(), &mut out)
                    .unwrap();
                out
            })
            .collect()
    }

    fn open_all(frames: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut o = Opener::new(&keys(1));
        frames
            .iter()
            .map(|f| {
                let (h, mut b) = split(f);
                o.open(&h, &mut b).map(|(_, p)| p.to_vec())
            })
            .collect()
    }

    #[test]
    fn records_open_in_order() {
        let got = open_all(&seal_n(3)).unwrap();
        assert_eq!(got[2], b"record 2");
    }

    #[test]
    fn every_flipped_bit_fails_to_open() {
        let frame = &seal_n(1)[0];
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut f = frame.clone();
                f[i] ^= 1 << bit;
                let (h, mut b) = split(&f);
                let r = Opener::new(&keys(1)).open(&h, &mut b);
                assert!(r.is_err(), "flip at byte {i} bit {bit} opened");
            }
        }
    }

    #[test]
    fn dropped_reordered_and_replayed_records_fail() {
        let f = seal_n(3);
        assert_eq!(
            open_all(&[f[0].clone(), f[2].clone()]),
            Err(RecordError::BadRecord)
        );
        assert_eq!(
            open_all(&[f[1].clone(), f[0].clone()]),
            Err(RecordError::BadRecord)
        );
        assert_eq!(
            open_all(&[f[0].clone(), f[0].clone()]),
            Err(RecordError::BadRecord)
        );
    }

    #[test]
    fn a_record_sealed_for_the_other_direction_fails() {
        let mut s = Sealer::new(&keys(2));
        let mut out = Vec::new();
        s.seal(3, b"x", &mut out).unwrap();
        assert_eq!(open_all(&[out]), Err(RecordError::BadRecord));
    }

    #[test]
    fn oversized_payload_is_refused() {
        let mut s = Sealer::new(&keys(1));
        let big = vec![0u8; MAX_RECORD_PAYLOAD + 1];
        assert!(matches!(
            s.seal(3, &big, &mut Vec::new()),
            Err(RecordError::PayloadTooLarge(_))
        ));
    }

    #[test]
    fn an_empty_payload_is_a_record() {
        let mut s = Sealer::new(&keys(1));
        let mut out = Vec::new();
        s.seal(3, b"", &mut out).unwrap();
        assert_eq!(out.len(), FRAME_HEADER_LEN + 1 + TAG_LEN);
        assert_eq!(open_all(&[out]).unwrap(), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn seal_with_matches_seal_and_skips_empty_or_failed_fills() {
        let mut a = Sealer::new(&keys(1));
        let mut b = Sealer::new(&keys(1));
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        a.seal(3, b"hello", &mut ra).unwrap();
        // An empty fill and a failing fill append nothing and use no sequence number...
        assert_eq!(b.seal_with(3, 64, &mut rb, |_| Ok::<_, ()>(0)), Ok(Ok(0)));
        assert_eq!(
            b.seal_with(3, 64, &mut rb, |_| Err::<usize, _>(())),
            Ok(Err(()))
        );
        assert!(rb.is_empty());
        // ...so the next record is byte for byte what `seal` makes.
        let got = b.seal_with(3, 64, &mut rb, |buf| {
            buf[..5].copy_from_slice(b"hello");
            Ok::<_, ()>(5)
        });
        assert_eq!(got, Ok(Ok(5)));
        assert_eq!(ra, rb);
        assert_eq!(open_all(&[rb]).unwrap(), vec![b"hello".to_vec()]);
    }

    #[test]
    fn the_sequence_number_changes_the_nonce() {
        let iv = [0u8; 12];
        assert_ne!(nonce_for(&iv, 0), nonce_for(&iv, 1));
        assert_ne!(nonce_for(&iv, 1 << 40), nonce_for(&iv, 1 << 41));
    }

    #[test]
    fn key_usage_limit_ends_the_connection() {
        let mut s = Sealer::new(&keys(1));
        s.0.bytes = MAX_BYTES_PER_KEY - 10;
        assert_eq!(
            s.seal(3, &[0; 100], &mut Vec::new()),
            Err(RecordError::KeyExhausted)
        );
    }
}
