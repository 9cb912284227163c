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
//! (cloister-policy, serde_json, seccompiler, oci-spec) and nothing of the crate
//! but `bpf` (which `build.rs` includes as well).

use crate::bpf::{self, DATA_ARCH, DATA_NR, JMP_JEQ_K, JMP_JGE_K, LD_W_ABS, RET_K};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::Value;

// Canonical JSON, digests and the unknown-field check are the shared
// `cloister-policy` code: the attestor signs policy manifests with the same
// functions, so the digests it signs are the ones runs record.
pub use cloister_policy::{canonical_json, sha256_digest};

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
    cloister_policy::parse_profile(json).map_err(|e| match e {
        cloister_policy::DigestError::UnknownField(f) => SpecError::UnknownField(f),
        cloister_policy::DigestError::Json(m) | cloister_policy::DigestError::Spec(m) => {
            SpecError::Parse(m)
        }
    })
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
