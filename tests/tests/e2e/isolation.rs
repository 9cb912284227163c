//! The attestor's key and signing socket are out of a build's reach: the
//! daemon never mounts them, and the sandbox has no network. Builds that
//! try fail, and nothing gets signed for them.

use super::harness::{Stack, repo_with};

#[test]
fn build_cannot_read_the_signing_key() {
    let stack = Stack::start(1);
    let keys = stack.attestor_state.join("keys");
    assert!(
        std::fs::read_dir(&keys).unwrap().count() > 0,
        "the attestor has a key on the host"
    );
    let repo = stack.dir.path().join("steal-key");
    repo_with(
        &repo,
        &[("build.sh", &format!("cat {}/* > stolen\n", keys.display()))],
    );
    let (code, job, _) = stack.build(&repo, &["--output", "stolen"], &["sh", "build.sh"]);
    assert_eq!(job["state"], "failed", "{job}");
    assert_ne!(code, 0);
    assert_eq!(job["exitCode"], 1, "cat failed inside the sandbox: {job}");
    let id = job["id"].as_str().unwrap();
    let log = stack.log(id);
    assert!(log.contains("No such file or directory"), "{log}");
    assert!(job["result"].is_null(), "nothing attested: {job}");
}

#[test]
fn build_cannot_reach_the_signing_socket() {
    let stack = Stack::start(1);
    let socket = stack.sign_socket.display().to_string();
    assert!(
        std::os::unix::net::UnixStream::connect(&stack.sign_socket).is_ok(),
        "the host can reach it"
    );
    let repo = stack.dir.path().join("forge");
    // Perl (in every Debian base) tries to connect to the socket path; the
    // attestor's TCP port on loopback is not reachable either (no network).
    let script = format!(
        "perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Peer => $ARGV[0]) or die \"connect: $!\\n\"; print \"CONNECTED\\n\"' {socket} > out\n"
    );
    repo_with(&repo, &[("build.sh", &script)]);
    let (code, job, _) = stack.build(&repo, &["--output", "out"], &["sh", "build.sh"]);
    assert_ne!(code, 0, "{job}");
    assert_eq!(job["state"], "failed");
    let log = stack.log(job["id"].as_str().unwrap());
    assert!(log.contains("connect: No such file or directory"), "{log}");
    assert!(!log.contains("CONNECTED"));
}
