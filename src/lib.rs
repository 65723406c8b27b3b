//! minitls: PKI-backed secure file transfer.
//!
//! A small private CA issues certificates ([`pki`]). A client and a server authenticate each
//! other with them and agree on keys ([`handshake`], driven over a byte stream by [`conn`]);
//! application data then travels in AES-256-GCM records ([`record`]); files are streamed and
//! signed by the server ([`transfer`]) and the signature is kept beside each received file for
//! later offline checks ([`sigfile`]). [`wire`] holds every byte encoding; [`net`] the TCP
//! parts; [`control`] the server operator's registry of connections and its control socket.
//! The binary (`src/main.rs`) is a thin CLI over this library.
//!
//! Security properties (PROTOCOL.md gives the details and the attack each check stops):
//! 1. Both certificates are validated against the CA: chain signature, validity, EKU, CA flag,
//!    and the server name.
//! 2. Each side signs the transcript hash (both randoms, both certificates, the wrapped key)
//!    under its own context string, so a copied certificate or a replayed handshake fails.
//! 3. The client's secret is wrapped with RSA-OAEP-SHA256 to the server's key, mixed with an
//!    ephemeral X25519 secret (forward secrecy) in HKDF-SHA-256 salted with the transcript.
//!    The server unwraps only after the client is authenticated; unwrap failures are
//!    indistinguishable from a wrong Finished MAC.
//! 4. Finished MACs confirm the keys in both directions before any request is sent.
//! 5. Records: per-direction keys, sequence-number nonces, authenticated headers, bounded
//!    lengths, an authenticated end of stream.
//! 6. Every file comes with an RSA-PSS signature binding path, size and SHA-256; the client
//!    writes to a temporary file and renames only after everything verified.
//! 7. Only paths under the served root are served; peer-supplied names are validated.
//! 8. Deadlines, idle timeouts and a client limit keep one peer from starving the rest.

pub mod audit;
pub mod conn;
#[cfg(unix)]
pub mod control;
pub mod crypto;
pub mod handshake;
pub mod mem;
pub mod net;
pub mod paths;
pub mod pki;
pub mod policy;
pub mod record;
pub mod session_cache;
pub mod sigfile;
pub mod testkit;
pub mod transfer;
pub mod wire;
