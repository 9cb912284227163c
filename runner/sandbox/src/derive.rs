//! What a profile's or a seccomp policy's text determines, whoever loads it:
//! canonical JSON and digests, the unknown-field check of a profile, the
//! rule-shape check and the compilation of a policy. Pure functions of the
//! text (and the target architecture), shared with the build script
//! (`build.rs` includes this file): it runs them once on the built-in
//! profiles and policies, so loading those takes precomputed results, keyed
//! by their exact text (see `precomputed`). Whatever is checked against the
//! running system, and the evaluation of the compiled filter against every
//! promised denial, still happens at every load.
//!
//! This file must only use crates that are build dependencies too
//! (serde_json, sha2, hex, seccompiler, oci-spec) and nothing of the crate
//! but `bpf` (which `build.rs` includes as well).

use crate::bpf::{self, DATA_ARCH, DATA_NR, JMP_JEQ_K, JMP_JGE_K, LD_W_ABS, RET_K};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Canonical JSON: object keys sorted bytewise, no insignificant whitespace.
/// (Sorting is done here rather than relying on serde_json's map order, which
/// a feature elsewhere in the build could change.)
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::with_capacity(4096);
    write_canonical(v, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("writing to a Vec cannot fail");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec cannot fail"),
    }
}

/// The first key present in `raw` but dropped by parsing (a typo or a field
/// this version of the runtime spec does not have), as a dotted path.
pub fn unknown_field(raw: &Value, parsed: &Value, path: &str) -> Option<String> {
    match (raw, parsed) {
        (Value::Object(r), Value::Object(p)) => {
            let mut keys: Vec<&String> = r.keys().collect();
            keys.sort();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match p.get(k) {
                    None if r[k].is_null() => {}
                    None => return Some(sub),
                    Some(pv) => {
                        if let Some(f) = unknown_field(&r[k], pv, &sub) {
                            return Some(f);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(r), Value::Array(p)) => r
            .iter()
            .zip(p)
            .enumerate()
            .find_map(|(i, (rv, pv))| unknown_field(rv, pv, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Why a profile's text does not make a runtime spec.
#[derive(Debug)]
pub enum SpecError {
    /// Not JSON, or not an OCI runtime spec.
    Parse(String),
    /// A field the spec does not have (dotted path).
    UnknownField(String),
}

/// Parses a profile's text as an OCI runtime spec, refusing fields the spec
/// does not have, and returns it with its digest: the sha256 of the
/// canonical JSON of the spec as parsed.
pub fn parse_spec(json: &str) -> Result<(oci_spec::runtime::Spec, String), SpecError> {
    let raw: Value = serde_json::from_str(json).map_err(|e| SpecError::Parse(e.to_string()))?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_value(raw.clone()).map_err(|e| SpecError::Parse(e.to_string()))?;
    let reserialized = serde_json::to_value(&spec).map_err(|e| SpecError::Parse(e.to_string()))?;
    if let Some(field) = unknown_field(&raw, &reserialized, "") {
        return Err(SpecError::UnknownField(field));
    }
    let digest = sha256_digest(canonical_json(&reserialized).as_bytes());
    Ok((spec, digest))
}

/// Why a policy's text does not compile to filters the sandbox installs.
#[derive(Debug)]
pub enum PolicyTextError {
    /// Not JSON, or not shaped like seccompiler's format.
    Json(String),
    /// One syscall with both an unconditional rule and argument rules in a
    /// filter: seccompiler would compile the argument rules alone.
    MixedRules { filter: String, syscall: String },
    /// seccompiler refused it.
    Compile(String),
}

/// A policy's digest (sha256 of its canonical JSON) and the programs to
/// install: the stack of [`compile_stack`] merged into one program
/// (`bpf::merge`), or the stack itself where the merge does not apply.
pub fn compile_policy(
    json: &str,
    arch: TargetArch,
) -> Result<(String, Vec<BpfProgram>), PolicyTextError> {
    let (digest, stack) = compile_stack(json, arch)?;
    Ok((digest, install_programs(stack, arch)))
}

/// The programs to install for `stack`: merged into one (`bpf::merge`), or
/// the stack itself where the merge does not apply.
pub fn install_programs(stack: Vec<BpfProgram>, arch: TargetArch) -> Vec<BpfProgram> {
    match bpf::merge(&stack, audit_arch(arch)) {
        Some(merged) => vec![merged],
        None => stack,
    }
}

/// A policy's digest and its filter stack as seccompiler compiles it, in
/// install order (sorted by filter name, so the same text always gives the
/// same stack), the x32 guard last.
pub fn compile_stack(
    json: &str,
    arch: TargetArch,
) -> Result<(String, Vec<BpfProgram>), PolicyTextError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| PolicyTextError::Json(e.to_string()))?;
    let digest = sha256_digest(canonical_json(&value).as_bytes());
    check_rule_shapes(&value)?;
    let for_arch = rules_for_arch(&value, arch)?;
    let map = seccompiler::compile_from_json(for_arch.to_string().as_bytes(), arch)
        .map_err(|e| PolicyTextError::Compile(e.to_string()))?;
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let mut programs: Vec<BpfProgram> = names.into_iter().map(|n| map[n].clone()).collect();
    programs.extend(x32_guard(arch));
    Ok((digest, programs))
}

/// The Rust name of `arch`, as a rule's `arch` list spells it.
pub fn arch_name(arch: TargetArch) -> &'static str {
    match arch {
        TargetArch::x86_64 => "x86_64",
        TargetArch::aarch64 => "aarch64",
        TargetArch::riscv64 => "riscv64",
    }
}

/// The policy as seccompiler reads it for `arch`: a rule with an `arch`
/// list (the architectures whose kernels have the call: `chmod`, `iopl`
/// exist on x86_64 only) is kept where the list names `arch` and dropped
/// elsewhere, and the list itself removed (seccompiler refuses unknown
/// fields). A list naming an architecture the sandbox does not know is
/// refused, so a typo cannot drop a rule everywhere.
fn rules_for_arch(value: &Value, arch: TargetArch) -> Result<Value, PolicyTextError> {
    const KNOWN: &[&str] = &["x86_64", "aarch64"];
    let mut value = value.clone();
    let Some(filters) = value.as_object_mut() else {
        return Err(PolicyTextError::Json(
            "top level must be an object of filters".into(),
        ));
    };
    for (filter, body) in filters.iter_mut() {
        let Some(rules) = body.get_mut("filter").and_then(Value::as_array_mut) else {
            continue;
        };
        let mut kept = Vec::with_capacity(rules.len());
        for mut rule in rules.drain(..) {
            let Some(list) = rule.as_object_mut().and_then(|r| r.remove("arch")) else {
                kept.push(rule);
                continue;
            };
            let names: Vec<&str> = list
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if names.is_empty() || names.iter().any(|n| !KNOWN.contains(n)) {
                return Err(PolicyTextError::Json(format!(
                    "filter {filter:?}: a rule's arch list must name some of {KNOWN:?}, got {list}"
                )));
            }
            if names.contains(&arch_name(arch)) {
                kept.push(rule);
            }
        }
        *rules = kept;
    }
    Ok(value)
}

/// The AUDIT_ARCH value seccomp reports for `arch`.
pub fn audit_arch(arch: TargetArch) -> u32 {
    match arch {
        TargetArch::x86_64 => 0xc000_003e,
        TargetArch::aarch64 => 0xc000_00b7,
        TargetArch::riscv64 => 0xc000_00f3,
    }
}

/// x86_64 only: deny (EPERM) any call whose number has the x32 bit set.
pub fn x32_guard(arch: TargetArch) -> Option<BpfProgram> {
    if arch != TargetArch::x86_64 {
        return None;
    }
    let stmt = bpf::stmt;
    let jump = bpf::jump;
    Some(vec![
        stmt(LD_W_ABS, DATA_ARCH),
        jump(JMP_JEQ_K, audit_arch(arch), 0, 3),
        stmt(LD_W_ABS, DATA_NR),
        jump(JMP_JGE_K, 0x4000_0000, 0, 1),
        stmt(RET_K, bpf::RET_ERRNO | 1), // EPERM
        stmt(RET_K, bpf::RET_ALLOW),
    ])
}

/// Refuses a filter that gives one syscall both an unconditional rule and
/// rules with argument conditions: seccompiler compiles that to the argument
/// rules alone, which would silently narrow the denial.
fn check_rule_shapes(value: &Value) -> Result<(), PolicyTextError> {
    let Some(filters) = value.as_object() else {
        return Err(PolicyTextError::Json(
            "top level must be an object of filters".into(),
        ));
    };
    for (filter, body) in filters {
        let rules = body
            .get("filter")
            .and_then(Value::as_array)
            .ok_or_else(|| PolicyTextError::Json(format!("filter {filter:?} has no rule list")))?;
        let mut plain = std::collections::BTreeSet::new();
        let mut conditional = std::collections::BTreeSet::new();
        for rule in rules {
            let name = rule
                .get("syscall")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if rule.get("args").is_some_and(|a| !a.is_null()) {
                conditional.insert(name.to_string());
            } else {
                plain.insert(name.to_string());
            }
        }
        if let Some(syscall) = plain.intersection(&conditional).next() {
            return Err(PolicyTextError::MixedRules {
                filter: filter.clone(),
                syscall: syscall.clone(),
            });
        }
    }
    Ok(())
}
