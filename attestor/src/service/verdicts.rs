//! A bounded memo of verdicts: `verify::verify` is a pure function of the
//! provenance bytes, the request and the trusted keys, so an identical call
//! (many consumers verifying the same release) reuses the earlier verdict
//! instead of checking signatures again. The key is the SHA-256 of exactly
//! those three inputs (the keys by keyid, so a rotation or an expiry changes
//! the key); nothing is re-derived, re-serialized or checked here. Bounded:
//! when full it is cleared (simple, and misses only cost a verification).

use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::verify::{Verdict, VerifyRequest};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The memo; `capacity` 0 disables it.
#[derive(Debug)]
pub struct VerdictCache {
    capacity: usize,
    map: Mutex<HashMap<[u8; 32], Arc<Verdict>>>,
}

impl VerdictCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// `verify::verify(provenance, trusted, req)`, remembered.
    pub fn verify(
        &self,
        provenance: &[u8],
        trusted: &[PublicKey],
        req: &VerifyRequest,
    ) -> Arc<Verdict> {
        if self.capacity == 0 {
            return Arc::new(cloister_attestor_core::verify::verify(
                provenance, trusted, req,
            ));
        }
        let key = cache_key(provenance, trusted, req);
        if let Some(v) = self.map.lock().expect("verdict cache lock").get(&key) {
            return v.clone();
        }
        let verdict = Arc::new(cloister_attestor_core::verify::verify(
            provenance, trusted, req,
        ));
        let mut map = self.map.lock().expect("verdict cache lock");
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, verdict.clone());
        verdict
    }
}

fn cache_key(provenance: &[u8], trusted: &[PublicKey], req: &VerifyRequest) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    part(provenance);
    // The request through its serde form: every field, unambiguous.
    part(&serde_json::to_vec(req).expect("a request serializes"));
    for k in trusted {
        part(k.keyid().as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(digest: &str) -> VerifyRequest {
        VerifyRequest {
            artifact_digest: digest.into(),
            source_uri: "https://x/y".into(),
            ..Default::default()
        }
    }

    #[test]
    fn key_covers_bytes_request_and_keys() {
        let a = cache_key(b"{}", &[], &req("sha256:00"));
        assert_eq!(a, cache_key(b"{}", &[], &req("sha256:00")));
        assert_ne!(a, cache_key(b"{ }", &[], &req("sha256:00")));
        assert_ne!(a, cache_key(b"{}", &[], &req("sha256:01")));
        let mut r = req("sha256:00");
        r.source_branch = Some("main".into());
        assert_ne!(a, cache_key(b"{}", &[], &r));
    }

    #[test]
    fn bounded_and_disableable() {
        let c = VerdictCache::new(2);
        for i in 0..5 {
            let v = c.verify(format!("{{\"n\":{i}}}").as_bytes(), &[], &req("sha256:00"));
            assert!(!v.verified);
            assert!(c.map.lock().unwrap().len() <= 2);
        }
        let off = VerdictCache::new(0);
        off.verify(b"{}", &[], &req("sha256:00"));
        assert!(off.map.lock().unwrap().is_empty());
    }
}
