//! Fixtures for tests, fuzz targets and benchmarks: a throw-away PKI made once per process.
//!
//! RSA key generation is slow, so four 2048-bit keys are generated once (in parallel) and
//! reused for every certificate; certificates are cheap. Not for production use.

use std::sync::{Arc, LazyLock};

use rsa::RsaPrivateKey;

use crate::handshake::{ClientConfig, LocalIdentity, ServerConfig};
use crate::pki::{self, CaKeyPair, Identity, LeafOverrides, LeafSpec, Role, San, TrustAnchor};

const DAY: i64 = 86_400;

/// CA key, other CA key, server key, client key.
static KEYS: LazyLock<Vec<RsaPrivateKey>> = LazyLock::new(|| {
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| pki::generate_key(2048)))
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .expect("key generation thread does not panic")
                .expect("2048-bit RSA key generation succeeds")
        })
        .collect()
});

pub fn ca_key() -> &'static RsaPrivateKey {
    &KEYS[0]
}
pub fn other_ca_key() -> &'static RsaPrivateKey {
    &KEYS[1]
}
pub fn server_key() -> &'static RsaPrivateKey {
    &KEYS[2]
}
pub fn client_key() -> &'static RsaPrivateKey {
    &KEYS[3]
}

/// A CA with one server and one client identity.
pub struct TestPki {
    pub ca: CaKeyPair,
    pub anchor: Arc<TrustAnchor>,
    pub server: Arc<LocalIdentity>,
    pub client: Arc<LocalIdentity>,
}

impl TestPki {
    fn new(name: &str, ca_key: &RsaPrivateKey) -> Self {
        let now = pki::now_unix();
        let ca = pki::new_ca(name, ca_key.clone(), now - DAY, now + 365 * DAY)
            .expect("test CA generation succeeds");
        let anchor = Arc::new(TrustAnchor::from_der(&ca.cert_der).expect("our CA is an anchor"));
        let server = leaf(
            &ca,
            Role::Server,
            "localhost",
            now - DAY,
            now + 30 * DAY,
            &Default::default(),
        );
        let client = leaf(
            &ca,
            Role::Client,
            "client",
            now - DAY,
            now + 30 * DAY,
            &Default::default(),
        );
        Self {
            ca,
            anchor,
            server,
            client,
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.client.clone(), self.anchor.clone(), "localhost")
    }

    pub fn server_config(&self) -> ServerConfig {
        ServerConfig::new(self.server.clone(), self.anchor.clone())
    }
}

/// The main test PKI.
pub fn pki() -> &'static TestPki {
    static P: LazyLock<TestPki> = LazyLock::new(|| TestPki::new("minitls test CA", ca_key()));
    &P
}

/// An unrelated CA with its own server and client (same leaf keys, different CA).
pub fn other_pki() -> &'static TestPki {
    static P: LazyLock<TestPki> = LazyLock::new(|| TestPki::new("other CA", other_ca_key()));
    &P
}

/// A CA with the same name as [`pki`]'s but another key: issuer names match, signatures don't.
pub fn impostor_pki() -> &'static TestPki {
    static P: LazyLock<TestPki> = LazyLock::new(|| TestPki::new("minitls test CA", other_ca_key()));
    &P
}

/// Issues a leaf from `ca` for the role's usual key (server or client key), with the default
/// server names for servers.
pub fn leaf(
    ca: &CaKeyPair,
    role: Role,
    common_name: &str,
    not_before_unix: i64,
    not_after_unix: i64,
    overrides: &LeafOverrides,
) -> Arc<LocalIdentity> {
    let key = match role {
        Role::Server => server_key(),
        Role::Client => client_key(),
    };
    leaf_with_key(
        ca,
        role,
        common_name,
        not_before_unix,
        not_after_unix,
        overrides,
        key,
    )
}

/// As [`leaf`], certifying `key`.
pub fn leaf_with_key(
    ca: &CaKeyPair,
    role: Role,
    common_name: &str,
    not_before_unix: i64,
    not_after_unix: i64,
    overrides: &LeafOverrides,
    key: &RsaPrivateKey,
) -> Arc<LocalIdentity> {
    let sans = match role {
        Role::Server => San::default_server_names(),
        Role::Client => Vec::new(),
    };
    let spec = LeafSpec {
        role,
        common_name: common_name.to_string(),
        sans,
        not_before_unix,
        not_after_unix,
    };
    let der = pki::issue_leaf_with(ca, &spec, key, overrides).expect("test leaf issuance succeeds");
    Arc::new(LocalIdentity::new(Identity {
        cert_der: der,
        key: key.clone().into(),
        chain: Vec::new(),
    }))
}

/// The same certificate with a different private key: what an attacker holding only a copy
/// of the certificate can present.
pub fn stolen_certificate(
    victim: &LocalIdentity,
    attacker_key: &RsaPrivateKey,
) -> Arc<LocalIdentity> {
    Arc::new(LocalIdentity::new(Identity {
        cert_der: victim.cert_der.clone(),
        key: attacker_key.clone().into(),
        chain: victim.chain.clone(),
    }))
}

/// A fresh ECDSA P-256 key (a client may hold one, SPEC §2.9).
pub fn p256_key() -> p256::ecdsa::SigningKey {
    loop {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        // Fails only for the zero scalar or one at or above the group order (about 2^-32).
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// A client identity issued by `ca` for `key`, an ECDSA P-256 key, valid from yesterday for
/// 30 days.
pub fn p256_client(
    ca: &CaKeyPair,
    common_name: &str,
    key: &p256::ecdsa::SigningKey,
) -> Arc<LocalIdentity> {
    let now = pki::now_unix();
    let spec = LeafSpec {
        role: Role::Client,
        common_name: common_name.to_string(),
        sans: Vec::new(),
        not_before_unix: now - DAY,
        not_after_unix: now + 30 * DAY,
    };
    let public = pki::PeerKey::P256(*key.verifying_key());
    let der = pki::issue_leaf_for(ca, &spec, &public, &LeafOverrides::default())
        .expect("test leaf issuance succeeds");
    Arc::new(LocalIdentity::new(
        Identity::from_parts(der, pki::PrivateKey::P256(key.clone()))
            .expect("the key belongs to its certificate"),
    ))
}

/// A session of the test client with the test server, valid for an hour, whose ticket is
/// sealed directly under `tickets` with `resumption` as its secret: what a client holds after
/// a full handshake, without making one (resumption tests and sweeps need a fresh ticket each
/// time, since a ticket is accepted once).
pub fn mint_session(
    tickets: &crate::handshake::TicketKeys,
    resumption: &crate::crypto::Secret32,
) -> crate::handshake::ResumableSession {
    let p = pki();
    let now = pki::now_unix();
    let mut id = [0u8; 16];
    rand::fill(&mut id[..]);
    let contents = crate::handshake::TicketContents {
        id,
        issued_at: now,
        expires_at: now + 3600,
        resumption: resumption.clone(),
        server_fingerprint: p.server.fingerprint(),
        client_cert: p.client.cert_der.clone(),
        client_chain: Vec::new(),
    };
    crate::handshake::ResumableSession {
        ticket: tickets.seal(&contents).expect("a test ticket fits"),
        resumption: resumption.clone(),
        server_der: p.server.cert_der.clone(),
        server_chain: Vec::new(),
        expires_at: now + 3600,
    }
}
