//! Name lookups for Cloister's static binaries.
//!
//! The binaries link glibc statically (`.cargo/config.toml`). A static glibc
//! has the `files` and `dns` name services built in; any other service named
//! in the host's `/etc/nsswitch.conf` (`systemd`, `resolve`, `sss`, `ldap`,
//! `mdns`, …) is a shared module it would `dlopen`, and a static process that
//! loads one (with its own libc.so) crashes: a lookup that misses
//! `/etc/group` and falls through to `systemd` ends in SIGSEGV instead of
//! "no such group". A root daemon has no business loading whatever modules
//! the host lists anyway.
//!
//! [`builtin_only`] therefore pins every database to the built-in services
//! (hosts: `files dns`, everything else: `files`) through glibc's
//! `__nss_configure_lookup`, which exists for exactly this case. Every
//! binary calls it first thing in `main`; [`group_gid`] calls it too, so a
//! library or test that looks a group up without `main` is pinned as well.
//! Names that only a module could resolve (systemd `DynamicUser` accounts,
//! LDAP groups) are therefore not found: give a numeric id instead.
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::CStr;
use std::sync::OnceLock;

/// The databases and the built-in services each is pinned to (C strings:
/// glibc takes them as they are).
pub const PINNED: &[(&CStr, &CStr)] = &[
    (c"passwd", c"files"),
    (c"group", c"files"),
    (c"initgroups", c"files"),
    (c"shadow", c"files"),
    (c"gshadow", c"files"),
    (c"hosts", c"files dns"),
    (c"networks", c"files"),
    (c"services", c"files"),
    (c"protocols", c"files"),
    (c"rpc", c"files"),
    (c"ethers", c"files"),
    (c"netgroup", c"files"),
    (c"aliases", c"files"),
];

/// Pins every database in [`PINNED`] to its built-in services, once per
/// process. Call it before any thread starts; later calls return the first
/// call's result. An error names the database glibc refused: the caller must
/// stop (a lookup could otherwise load a module and crash).
pub fn builtin_only() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(pin).clone()
}

#[cfg(target_env = "gnu")]
fn pin() -> Result<(), String> {
    unsafe extern "C" {
        // <nss.h>: int __nss_configure_lookup (const char *dbname,
        // const char *string); 0 on success, -1 for an unknown database.
        fn __nss_configure_lookup(db: *const libc::c_char, services: *const libc::c_char) -> i32;
    }
    for (db, services) in PINNED {
        // SAFETY: both arguments are NUL-terminated static strings; glibc
        // copies what it keeps. `builtin_only` runs this once, which its
        // callers do before starting threads.
        let rc = unsafe { __nss_configure_lookup(db.as_ptr(), services.as_ptr()) };
        if rc != 0 {
            return Err(format!(
                "glibc refused to pin the {} name service to {:?}",
                db.to_string_lossy(),
                services.to_string_lossy()
            ));
        }
    }
    Ok(())
}

#[cfg(not(target_env = "gnu"))]
fn pin() -> Result<(), String> {
    // Other libcs (musl) have no loadable NSS modules.
    Ok(())
}

/// The gid of a group given by name or as a number. `Ok(None)`: no such
/// group in `/etc/group` (the only place a name is looked up, see the
/// module comment).
pub fn group_gid(group: &str) -> Result<Option<u32>, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(Some(gid));
    }
    builtin_only()?;
    match nix::unistd::Group::from_name(group) {
        Ok(g) => Ok(g.map(|g| g.gid.as_raw())),
        Err(e) => Err(format!("look up group {group:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_succeeds_and_is_idempotent() {
        assert_eq!(builtin_only(), Ok(()));
        assert_eq!(builtin_only(), Ok(()));
    }

    /// The case that crashed a static binary before pinning: a name that
    /// misses /etc/group falls through to the next service. It must come
    /// back as "not found".
    #[test]
    fn a_missing_group_is_not_found_rather_than_fatal() {
        assert_eq!(group_gid("no-such-group-cloister"), Ok(None));
        let root = group_gid("root").unwrap();
        assert_eq!(root, Some(0));
        assert_eq!(group_gid("4242"), Ok(Some(4242)));
    }

    /// Hosts keep DNS and /etc/hosts: localhost still resolves.
    #[test]
    fn localhost_resolves_after_pinning() {
        builtin_only().unwrap();
        use std::net::ToSocketAddrs as _;
        let addrs: Vec<_> = ("localhost", 80).to_socket_addrs().unwrap().collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
