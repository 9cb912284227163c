//! The sandbox: runs one untrusted command in fresh Linux namespaces with no
//! network, a synthesized root, resource limits, no capabilities and a seccomp
//! filter. This is the only crate in the workspace allowed to use `unsafe`.
