//! Times the RSA operations of one handshake and of key loading, with the `rsa` crate as built
//! here (run it in release mode):
//!
//!     cargo run --release --example rsa_ops -- [KEY.pem] [ROUNDS]
//!
//! Without a key it makes a 2048-bit one. Per handshake the client signs once and wraps once;
//! the server unwraps once and signs once (in parallel), and each side verifies the other's
//! certificate chain and transcript signature. A client with an ECDSA P-256 key signs with it
//! instead; its sign and verify times are printed last.

use std::time::Instant;

use minitls::crypto::{self, Secret32, Signer};
use minitls::pki::{PeerKey, PrivateKey};
use rsa::RsaPrivateKey;
use rsa::traits::PublicKeyParts;

fn per_op(rounds: u32, mut op: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..rounds {
        op();
    }
    t.elapsed().as_secs_f64() * 1e3 / f64::from(rounds)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pem = match args.next() {
        Some(path) => std::fs::read_to_string(&path).expect("readable key file"),
        None => {
            let key = RsaPrivateKey::new(&mut rand::rng(), 2048).expect("key generation");
            minitls::pki::private_key_to_pem(&key).expect("PEM encoding")
        }
    };
    let rounds: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(100);
    let key = minitls::pki::private_key_from_pem(&pem).expect("a PKCS#8 or PKCS#1 RSA key");
    let public = key.to_public_key();
    let peer_key = PeerKey::Rsa(public.clone());
    let signer = Signer::new(&PrivateKey::Rsa(key.clone()));
    let hash = [7u8; 32];
    let sig = crypto::sign(&signer, b"context", &hash).expect("signing");
    let secret = Secret32([1u8; 32]);
    let wrapped = crypto::wrap_secret(&public, &secret).expect("wrapping");

    println!(
        "{} rounds, {}-bit key, ms per operation:",
        rounds,
        public.size() * 8
    );
    let parse = per_op(rounds, || {
        minitls::pki::private_key_from_pem(&pem).expect("parses");
    });
    println!("  parse private key  {parse:.3}");
    let sign = per_op(rounds, || {
        crypto::sign(&signer, b"context", &hash).expect("signs");
    });
    println!("  PSS sign           {sign:.3}");
    let verify = per_op(rounds, || {
        assert!(crypto::verify(&peer_key, b"context", &hash, &sig));
    });
    println!("  PSS verify         {verify:.3}");
    let wrap = per_op(rounds, || {
        crypto::wrap_secret(&public, &secret).expect("wraps");
    });
    println!("  OAEP wrap          {wrap:.3}");
    let unwrap = per_op(rounds, || {
        assert_eq!(crypto::unwrap_secret(&key, &wrapped).0, secret.0);
    });
    println!("  OAEP unwrap        {unwrap:.3}");

    // A client may hold an ECDSA P-256 key instead (SPEC §2.9): its two operations.
    let ec = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("a valid P-256 scalar");
    let ec_public = PeerKey::P256(*ec.verifying_key());
    let ec_signer = Signer::new(&PrivateKey::P256(ec));
    let ec_sig = crypto::sign(&ec_signer, b"context", &hash).expect("signing");
    let sign = per_op(rounds, || {
        crypto::sign(&ec_signer, b"context", &hash).expect("signs");
    });
    println!("  ECDSA P-256 sign   {sign:.3}");
    let verify = per_op(rounds, || {
        assert!(crypto::verify(&ec_public, b"context", &hash, &ec_sig));
    });
    println!("  ECDSA P-256 verify {verify:.3}");
}
