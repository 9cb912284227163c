//! A bounded memo of verdicts: `verify::verify_with` is a pure function of
//! the provenance bytes, the request, the trusted keys and its options, so
//! an identical call (many consumers verifying the same release) reuses the
//! earlier verdict instead of checking signatures again.
//!
//! Invariants:
//! - The key is the SHA-256 of exactly those inputs: the provenance bytes as
//!   received, every request field (presence and value, length-prefixed),
//!   the trusted key set's fingerprint (its sorted keyids) and whether the
//!   statement is wanted. Nothing is re-derived, re-serialized or checked
//!   here. When all of those but the keys come from one request body
//!   (`POST /v1/verify` with the provenance in it), the key is the SHA-256
//!   of that body's digest (the request hash metering stores anyway) and
//!   the keys' fingerprint ([`VerdictCache::verify_sent`]): the same bytes
//!   parse to the same inputs, and the body is hashed once per request.
//! - A change of the trusted set (rotation, import, expiry of a rotated key)
//!   empties the memo: no verdict outlives the keys it was computed with.
//! - Bounded: two generations of at most `capacity / 2` entries each; when
//!   the current one is full it becomes the previous one and the old
//!   previous one is dropped (a hit in the previous generation moves the
//!   entry forward), so recently used verdicts survive and memory stays
//!   bounded without per-entry bookkeeping.

use super::TrustedSet;
use cloister_attestor_core::verify::{Verdict, VerifyOptions, VerifyRequest, verify_with};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Key = [u8; 32];

#[derive(Debug, Default)]
struct Inner {
    /// The trusted set generation the entries were computed with.
    generation: u64,
    current: HashMap<Key, Arc<Verdict>>,
    previous: HashMap<Key, Arc<Verdict>>,
}

/// The memo; `capacity` 0 disables it.
#[derive(Debug)]
pub struct VerdictCache {
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl VerdictCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// (hits, misses) since start (misses include every call when disabled).
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// `verify_with(provenance, trusted.keys, req, {include_statement})`,
    /// remembered. The verdict never carries the payload bytes (the service
    /// does not use them).
    pub fn verify(
        &self,
        provenance: &[u8],
        trusted: &TrustedSet,
        req: &VerifyRequest,
        include_statement: bool,
    ) -> Arc<Verdict> {
        self.remembered(
            || cache_key(provenance, trusted, req, include_statement),
            provenance,
            trusted,
            req,
            include_statement,
        )
    }

    /// [`Self::verify`] for a provenance, request and option that all come
    /// from one request body whose SHA-256 (`sent`, the request hash the
    /// metering computes anyway) names them: the key is that digest and the
    /// trusted set's fingerprint, so the body is not hashed a second time.
    /// The caller guarantees that the same body always yields the same
    /// `provenance`, `req` and `include_statement` (they are parsed from it).
    pub fn verify_sent(
        &self,
        sent: &[u8; 32],
        provenance: &[u8],
        trusted: &TrustedSet,
        req: &VerifyRequest,
        include_statement: bool,
    ) -> Arc<Verdict> {
        self.remembered(
            || sent_key(sent, trusted),
            provenance,
            trusted,
            req,
            include_statement,
        )
    }

    fn remembered(
        &self,
        key: impl FnOnce() -> Key,
        provenance: &[u8],
        trusted: &TrustedSet,
        req: &VerifyRequest,
        include_statement: bool,
    ) -> Arc<Verdict> {
        let compute = || {
            let mut v = verify_with(
                provenance,
                &trusted.keys,
                req,
                &VerifyOptions { include_statement },
            );
            v.payload = None;
            Arc::new(v)
        };
        if self.capacity == 0 {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return compute();
        }
        let key = key();
        {
            let mut inner = self.inner.lock().expect("verdict cache lock");
            if inner.generation != trusted.generation {
                // The trusted keys changed: forget everything.
                inner.current.clear();
                inner.previous.clear();
                inner.generation = trusted.generation;
            }
            if let Some(v) = inner.current.get(&key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return v.clone();
            }
            if let Some(v) = inner.previous.remove(&key) {
                self.insert(&mut inner, key, v.clone());
                self.hits.fetch_add(1, Ordering::Relaxed);
                return v;
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let verdict = compute();
        let mut inner = self.inner.lock().expect("verdict cache lock");
        if inner.generation == trusted.generation {
            self.insert(&mut inner, key, verdict.clone());
        }
        verdict
    }

    fn insert(&self, inner: &mut Inner, key: Key, v: Arc<Verdict>) {
        let half = self.capacity.div_ceil(2);
        if inner.current.len() >= half {
            inner.previous = std::mem::take(&mut inner.current);
        }
        inner.current.insert(key, v);
    }

    /// Entries held now (both generations).
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().expect("verdict cache lock");
        inner.current.len() + inner.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn cache_key(
    provenance: &[u8],
    trusted: &TrustedSet,
    req: &VerifyRequest,
    include_statement: bool,
) -> Key {
    let mut parts: Vec<&[u8]> = vec![
        provenance,
        req.artifact_digest.as_bytes(),
        req.source_uri.as_bytes(),
    ];
    // Optional fields: a presence byte, then the value.
    for f in [
        &req.source_tag,
        &req.source_versioned_tag,
        &req.source_branch,
        &req.builder_id,
    ] {
        match f {
            None => parts.push(&[0]),
            Some(v) => parts.extend([&[1u8][..], v.as_bytes()]),
        }
    }
    parts.push(&trusted.fingerprint);
    parts.push(if include_statement { &[1] } else { &[0] });
    super::framed_sha256(parts)
}

/// The key of a verdict named by its request body's digest. Three framed
/// parts, where a [`cache_key`] has nine or ten: the framing (each part
/// length-prefixed) decodes uniquely, so the two kinds of key never meet.
fn sent_key(sent: &[u8; 32], trusted: &TrustedSet) -> Key {
    super::framed_sha256([&b"sent body"[..], sent, &trusted.fingerprint])
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_attestor_core::keys::{Algorithm, KeyPair};

    fn req(digest: &str) -> VerifyRequest {
        VerifyRequest {
            artifact_digest: format!("sha256:{}", digest.repeat(32)),
            source_uri: "https://x/y".into(),
            ..Default::default()
        }
    }

    fn set(generation: u64, keys: Vec<cloister_attestor_core::keys::PublicKey>) -> TrustedSet {
        TrustedSet::new(keys, generation, None)
    }

    #[test]
    fn key_covers_bytes_request_keys_and_options() {
        let none = set(1, vec![]);
        let a = cache_key(b"{}", &none, &req("00"), false);
        assert_eq!(a, cache_key(b"{}", &none, &req("00"), false));
        assert_ne!(a, cache_key(b"{ }", &none, &req("00"), false));
        assert_ne!(a, cache_key(b"{}", &none, &req("01"), false));
        assert_ne!(a, cache_key(b"{}", &none, &req("00"), true));
        let mut r = req("00");
        r.source_branch = Some("main".into());
        assert_ne!(a, cache_key(b"{}", &none, &r, false));
        // The same value in another field is another request.
        let mut t = req("00");
        t.source_tag = Some("main".into());
        assert_ne!(
            cache_key(b"{}", &none, &r, false),
            cache_key(b"{}", &none, &t, false)
        );
        let kp = KeyPair::generate(Algorithm::Ed25519).unwrap();
        let one = set(1, vec![kp.public_key().clone()]);
        assert_ne!(a, cache_key(b"{}", &one, &req("00"), false));
    }

    #[test]
    fn a_sent_body_key_names_the_body_and_the_key_set() {
        let none = set(1, vec![]);
        let kp = KeyPair::generate(Algorithm::Ed25519).unwrap();
        let one = set(1, vec![kp.public_key().clone()]);
        let a = sent_key(&[7; 32], &none);
        assert_eq!(a, sent_key(&[7; 32], &none));
        assert_ne!(a, sent_key(&[8; 32], &none));
        assert_ne!(a, sent_key(&[7; 32], &one));
        // Remembered like any other verdict, and dropped with the key set.
        let c = VerdictCache::new(8);
        let v1 = c.verify_sent(&[7; 32], b"{}", &none, &req("00"), false);
        let v2 = c.verify_sent(&[7; 32], b"{}", &none, &req("00"), false);
        assert!(Arc::ptr_eq(&v1, &v2));
        let v3 = c.verify_sent(&[7; 32], b"{}", &set(2, vec![]), &req("00"), false);
        assert!(!Arc::ptr_eq(&v1, &v3));
    }

    #[test]
    fn bounded_and_disableable() {
        let c = VerdictCache::new(4);
        let s = set(1, vec![]);
        for i in 0..20 {
            let v = c.verify(format!("{{\"n\":{i}}}").as_bytes(), &s, &req("00"), false);
            assert!(!v.verified);
            assert!(c.len() <= 4, "{}", c.len());
        }
        let off = VerdictCache::new(0);
        off.verify(b"{}", &s, &req("00"), false);
        assert!(off.is_empty());
    }

    #[test]
    fn hits_return_the_remembered_verdict_and_a_key_change_empties_it() {
        let c = VerdictCache::new(8);
        let s1 = set(1, vec![]);
        let a = c.verify(b"{}", &s1, &req("00"), false);
        let b = c.verify(b"{}", &s1, &req("00"), false);
        assert!(Arc::ptr_eq(&a, &b), "identical call reuses the verdict");
        assert_eq!(c.len(), 1);
        let s2 = set(2, vec![]);
        let d = c.verify(b"{}", &s2, &req("00"), false);
        assert!(!Arc::ptr_eq(&a, &d), "new key set, new verdict");
        assert_eq!(c.len(), 1, "the old generation's entries are gone");
    }
}
