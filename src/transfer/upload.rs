//! The server's side of `push`: an upload lands the way a fetched file does on the client
//! ([`super::receive`], [`super::land`]), and only after the uploading client's signature over
//! (path, size, SHA-256) verified against the key its certificate was authenticated with.
//!
//! 1. `Put` names a path, a kind and a size. Before anything is written, the path must be
//!    canonical and relative, free of minitls's own suffixes, under a write grant of the
//!    client the handshake authenticated, and the size within `--max-upload-size`; a file
//!    that exists is replaced only with `force` (directories and links never are).
//! 2. The directories on the way are opened (made where missing) one component at a time
//!    without following a symbolic link, so a link inside the root cannot redirect a write.
//! 3. `PutReady`; the data streams into a hidden temporary file beside the destination while
//!    it is hashed; a full disk is answered after the rest of the data was read and dropped.
//! 4. The client's `FileEnd` must describe exactly what arrived and carry a valid signature
//!    under [`UPLOAD_SIGNATURE_CONTEXT`]; then the file is renamed into place (atomically,
//!    never over an existing file without `force`), with the signature and the client's
//!    certificate beside it (`NAME.minitls-sig`), and `PutDone` carries the server's digest.
//!
//! Any failure leaves nothing: the temporary files are removed on every path out.

use std::io;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::TransferError;
use super::land::{self, Dir, Kind, PARTIAL_SUFFIX, Staged, TMP_SUFFIX};
use super::receive::receive_data;
use super::server::{Outcome, ServeOptions, send_error};
use super::{NoProgress, plain_io};
use crate::conn::{Channel, ConnError, Transport};
use crate::crypto::{self, UPLOAD_SIGNATURE_CONTEXT};
use crate::paths;
use crate::pki::Role;
use crate::sigfile::{self, MANIFEST_SUFFIX, SIG_SUFFIX, SignedStatement};
use crate::wire::{AppMessage, EntryKind, ErrorCode, FileDone, PutStart};

/// The default of `serve --max-upload-size`: 4 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 4 << 30;

/// Names an upload may not take: minitls's own files (signatures, manifests, partial and
/// temporary files). Otherwise a client with a write grant could plant a sidecar beside
/// another client's upload, or a file that a fetch or the server treats as its own.
fn reserved(name: &str) -> bool {
    [SIG_SUFFIX, MANIFEST_SUFFIX, PARTIAL_SUFFIX, TMP_SUFFIX]
        .iter()
        .any(|s| name.ends_with(s))
        || paths::is_staging_name(name)
}

/// A refusal: the code and text the client is sent.
type Refusal = (ErrorCode, String);

fn refused(code: ErrorCode, text: impl Into<String>) -> Refusal {
    (code, text.into())
}

/// Checks an upload's request against the path rules, the policy and the size limit, then
/// opens (making where missing) the directory it goes into. Returns that directory, the
/// normalised path and the final name.
fn admit(opts: &ServeOptions<'_>, put: &PutStart) -> Result<(Dir, String, String), Refusal> {
    let parts = paths::parse_relative(&put.path, false)
        .map_err(|e| refused(ErrorCode::PathRefused, format!("{}: {e}", put.path)))?;
    let rel = parts.join("/");
    if parts.iter().any(|c| reserved(c)) {
        return Err(refused(
            ErrorCode::PathRefused,
            format!(
                "'{rel}': names ending in .minitls-sig, .minitls-manifest, .minitls-partial or .minitls-tmp are minitls's own"
            ),
        ));
    }
    // The server's own secrets, should they have been moved under the root after the start
    // (serve refuses a root holding them), are never written over, grant or not.
    if opts.root.hides(&opts.root.path().join(&rel)) {
        return Err(refused(
            ErrorCode::PathRefused,
            format!("'{rel}'{}", super::server::NOT_ALLOWED),
        ));
    }
    // Decided on the normalised path and the identity the handshake authenticated, before
    // the file system is looked at.
    if !opts.access.can_write(&rel) {
        return Err(refused(
            ErrorCode::PathRefused,
            format!("'{rel}'{}", super::server::NOT_ALLOWED),
        ));
    }
    if put.kind == EntryKind::File && put.size > opts.max_upload {
        return Err(refused(
            ErrorCode::TooLarge,
            format!(
                "'{rel}' is {} bytes; this server accepts uploads of at most {} bytes",
                put.size, opts.max_upload
            ),
        ));
    }
    let (name, dirs) = parts
        .split_last()
        .expect("parse_relative(.., false) returns at least one component");
    let io_refusal = |what: &str, e: io::Error| {
        refused(
            ErrorCode::WriteFailed,
            format!("'{rel}': cannot {what}: {}", plain_io(&e)),
        )
    };
    let root =
        Dir::open(opts.root.path()).map_err(|e| io_refusal("open the served directory", e))?;
    let mut dir = root;
    for (i, part) in dirs.iter().enumerate() {
        let so_far = dirs[..=i].join("/");
        dir = match dir
            .kind(part)
            .map_err(|e| io_refusal("look up the directory", e))?
        {
            None => dir
                .create_child(part)
                .map_err(|e| io_refusal("make the directory", e))?,
            Some(Kind::Dir) => match dir.open_child(part) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    return Err(io_refusal(
                        "open the directory",
                        io::ErrorKind::NotFound.into(),
                    ));
                }
                Err(e) => return Err(io_refusal("open the directory", e)),
            },
            Some(k) => {
                return Err(refused(
                    ErrorCode::PathRefused,
                    format!(
                        "'{rel}': '{so_far}' is {} on the server, not a directory",
                        k.describe()
                    ),
                ));
            }
        };
    }
    Ok((dir, rel, (*name).to_string()))
}

/// Answers one `Put` (the server's half of `push`). The outer error ends the connection; a
/// refusal is an `Error` message and the connection goes on.
pub(super) fn receive_put<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    put: &PutStart,
    out: &mut Outcome,
) -> Result<(), ConnError> {
    // 1-2. Admission, before anything is written or any data is asked for.
    let (dir, rel, name) = match admit(opts, put) {
        Ok(v) => v,
        Err((code, text)) => return refuse(chan, opts, out, &put.path, code, text),
    };
    let existing = match dir.kind(&name) {
        Ok(k) => k,
        Err(e) => {
            let text = format!("'{rel}': cannot look it up: {}", plain_io(&e));
            return refuse(chan, opts, out, &rel, ErrorCode::WriteFailed, text);
        }
    };
    if put.kind == EntryKind::Dir {
        let made = match existing {
            Some(Kind::Dir) => Ok(()),
            None => dir
                .create_child(&name)
                .map(drop)
                .map_err(|e| format!("'{rel}': cannot make the directory: {}", plain_io(&e))),
            Some(k) => Err(format!("'{rel}' is {} on the server", k.describe())),
        };
        return match made {
            Ok(()) => {
                (opts.log)(&format!("made directory '{rel}' (upload)"));
                chan.send_app(&AppMessage::PutDone(FileDone { sha256: [0; 32] }))
            }
            Err(text) => refuse(chan, opts, out, &rel, ErrorCode::Exists, text),
        };
    }
    match existing {
        None => {}
        Some(Kind::File) if put.force => {}
        Some(Kind::File) => {
            let text = format!("'{rel}' already exists on the server (push --force replaces it)");
            return refuse(chan, opts, out, &rel, ErrorCode::Exists, text);
        }
        Some(k) => {
            let text = format!(
                "'{rel}' is {} on the server; only a file can be replaced",
                k.describe()
            );
            return refuse(chan, opts, out, &rel, ErrorCode::Exists, text);
        }
    }
    let staged = dir
        .create_temp_file()
        .and_then(|(tmp, file)| Staged::new(&dir, tmp, file));
    let mut staged = match staged {
        Ok(s) => s,
        Err(e) => {
            let text = format!("'{rel}': cannot store it: {}", plain_io(&e));
            return refuse(chan, opts, out, &rel, ErrorCode::WriteFailed, text);
        }
    };
    chan.send_app(&AppMessage::PutReady)?;
    chan.flush()?;

    // 3. The data, hashed as it lands. A full disk is answered once the client has sent
    //    everything (it is not listening before that); a cut ends the connection, and the
    //    staged file goes with it.
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let started = Instant::now();
    let next = receive_data(
        chan,
        &mut staged,
        &mut hasher,
        &mut received,
        put.size,
        true,
        &mut NoProgress,
    );
    out.bytes = received;
    let (typ, payload) = match next {
        Ok(v) => v,
        Err(TransferError::Io { source, .. }) => {
            let text = format!("'{rel}': cannot store it: {}", plain_io(&source));
            return refuse(chan, opts, out, &rel, ErrorCode::WriteFailed, text);
        }
        Err(TransferError::Conn(e)) => return Err(e),
        Err(e) => return Err(ConnError::Protocol(e.to_string())),
    };
    let end = match AppMessage::decode(typ, &payload)? {
        AppMessage::FileEnd(end) => end,
        other => {
            return Err(ConnError::Protocol(format!(
                "client sent {:?} instead of the end of the upload of '{rel}'",
                other.typ()
            )));
        }
    };
    let digest: [u8; 32] = hasher.finalize().into();
    out.sha256 = Some(digest);

    // 4. The client's statement must describe exactly what arrived, and be signed by the
    //    client the handshake authenticated.
    let st = &end.statement;
    let mismatch = if st.path != rel {
        Some(format!(
            "the signed path '{}' is not the upload's '{rel}'",
            st.path
        ))
    } else if st.size != received || received != put.size {
        Some(format!(
            "'{rel}': {received} bytes arrived, {} were announced and {} signed",
            put.size, st.size
        ))
    } else if st.sha256 != digest {
        Some(format!(
            "'{rel}': the data does not match the signed SHA-256"
        ))
    } else if !crypto::verify(
        &chan.peer().public_key,
        UPLOAD_SIGNATURE_CONTEXT,
        &sigfile::statement_digest(st),
        &end.signature,
    ) {
        Some(format!(
            "'{rel}': the client's signature over the upload does not verify"
        ))
    } else {
        None
    };
    if let Some(text) = mismatch {
        return refuse(
            chan,
            opts,
            out,
            &rel,
            ErrorCode::IntegrityFailed,
            format!("{text}; nothing was stored"),
        );
    }
    let signed = SignedStatement {
        statement: end.statement.clone(),
        signature: end.signature,
        signer_der: chan.peer_der().to_vec(),
        signer_chain: chan.peer().chain.clone(),
        signer_role: Role::Client,
    };
    if let Err(text) = put_in_place(&dir, &rel, &name, staged, &signed, put.force) {
        let code = if text.contains("already exists") {
            ErrorCode::Exists
        } else {
            ErrorCode::WriteFailed
        };
        return refuse(chan, opts, out, &rel, code, text);
    }
    (opts.log)(&format!(
        "stored '{rel}' ({received} bytes in {} ms, signed by the client)",
        started.elapsed().as_millis()
    ));
    chan.send_app(&AppMessage::PutDone(FileDone { sha256: digest }))
}

/// Renames the verified upload into place with its signature beside it
/// ([`land::persist_with_sidecar`], as a fetch does on the client).
fn put_in_place(
    dir: &Dir,
    rel: &str,
    name: &str,
    staged: Staged,
    signed: &SignedStatement,
    force: bool,
) -> Result<(), String> {
    let text = signed.to_text();
    match land::persist_with_sidecar(
        dir,
        staged,
        name,
        &sigfile::sidecar_name(name),
        text.as_bytes(),
        force,
    ) {
        Ok(()) => Ok(()),
        // Someone else's upload (or a local user) took the name meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(format!(
            "'{rel}' already exists on the server (push --force replaces it)"
        )),
        Err(e) => Err(format!("'{rel}': cannot store it: {}", plain_io(&e))),
    }
}

/// Refuses an upload: logs it, answers the client, notes the result for the audit log.
fn refuse<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    out: &mut Outcome,
    path: &str,
    code: ErrorCode,
    text: String,
) -> Result<(), ConnError> {
    (opts.log)(&format!("refused upload '{path}': {text}"));
    send_error(chan, out, code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minitls_own_names_are_reserved() {
        for n in [
            "a.minitls-sig",
            "t.minitls-manifest",
            ".x.minitls-partial",
            ".0123456789abcdef.minitls-tmp",
            "x.minitls-tmp",
        ] {
            assert!(reserved(n), "{n}");
        }
        for n in ["a.sig", "minitls-sig", "report.pdf", ".hidden"] {
            assert!(!reserved(n), "{n}");
        }
    }

    #[test]
    fn io_errors_reach_the_client_without_paths_or_os_error_numbers() {
        let e = io::Error::from_raw_os_error(28);
        assert_eq!(plain_io(&e), "no space left on the server");
        let e = io::Error::other("weird (os error 99)");
        assert_eq!(plain_io(&e), "weird");
    }
}
