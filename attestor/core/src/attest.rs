//! Signing a statement: validate it, serialize it once, sign the PAE of those
//! bytes through a [`Signer`], and return both output forms (the DSSE
//! envelope for `.intoto.jsonl` and the Sigstore bundle for `.sigstore.json`).

use thiserror::Error;

use crate::bundle::{Bundle, BundleError};
use crate::dsse::{DsseError, Envelope, PAYLOAD_TYPE};
use crate::keys::Signer;
use crate::statement::{Statement, StatementError};

/// Errors from signing a statement.
#[derive(Debug, Error)]
pub enum AttestError {
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error(transparent)]
    Dsse(#[from] DsseError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// A signed statement in both output forms (same payload, same signature).
#[derive(Debug, Clone)]
pub struct Signed {
    pub envelope: Envelope,
    pub bundle: Bundle,
    /// The signing key's keyid.
    pub keyid: String,
}

impl Signed {
    /// The `.intoto.jsonl` file contents (one line).
    pub fn intoto_jsonl(&self) -> String {
        self.envelope.to_jsonl_line()
    }

    /// The `.sigstore.json` file contents.
    pub fn sigstore_json(&self) -> String {
        self.bundle.to_json_pretty()
    }
}

/// Validates and signs `statement` with `signer`.
pub fn sign_statement(statement: &Statement, signer: &dyn Signer) -> Result<Signed, AttestError> {
    statement.validate()?;
    let envelope = Envelope::sign(PAYLOAD_TYPE, statement.to_json_bytes(), signer)?;
    let bundle = Bundle::from_envelope(envelope.clone())?;
    Ok(Signed {
        envelope,
        bundle,
        keyid: signer.keyid().to_owned(),
    })
}
