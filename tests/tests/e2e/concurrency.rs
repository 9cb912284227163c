//! Eight concurrent jobs: each job's outputs and provenance are its own (no
//! cross-talk), and a daemon restart in the middle loses none of them.

use super::harness::{Stack, git, repo_with, sha256_file};

#[test]
fn eight_jobs_no_cross_talk_none_lost_across_a_restart() {
    let mut stack = Stack::start(4);
    let mut jobs = Vec::new();
    for i in 0..8 {
        let repo = stack.dir.path().join(format!("job{i}"));
        // Each build writes its own token, sleeps a little (so the restart
        // lands while jobs run and wait), and writes a shared /tmp name that
        // another job would see if sandboxes shared anything.
        let script = format!(
            "[ -e /tmp/shared ] && {{ echo 'saw another job'; exit 9; }}\n\
             echo job{i} > /tmp/shared\nsleep 1\necho token-{i} > out.txt\n"
        );
        repo_with(&repo, &[("build.sh", &script)]);
        let out = stack.runner(&[
            "build",
            "--detach",
            "--source",
            repo.to_str().unwrap(),
            "--uri",
            &format!("git+https://github.com/cloister-dev/job{i}"),
            "--output",
            "out.txt",
            "--",
            "sh",
            "build.sh",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        jobs.push((i, repo, job["id"].as_str().unwrap().to_string()));
    }
    // Restart while jobs are running and queued: SIGTERM drains (running
    // jobs finish within the grace period), queued ones wait for the next start.
    stack.stop_runner();
    stack.start_runner();
    for (_, _, id) in &jobs {
        // `logs --follow` returns when the job has ended.
        let out = stack.runner(&["logs", "--follow", id]);
        assert!(out.status.success());
    }
    let out = stack.runner(&["jobs", "--json", "--limit", "100"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.len(), 8, "no job lost, none duplicated");
    for (i, repo, id) in &jobs {
        let job = all
            .iter()
            .find(|j| j["id"] == id.as_str())
            .expect("job listed");
        assert_eq!(
            job["state"],
            "succeeded",
            "job {i}: {job}\n{}",
            stack.log(id)
        );
        let a = &job["result"]["artifacts"][0];
        let path = a["path"].as_str().unwrap();
        assert!(path.contains(id.as_str()), "artifacts are per job: {path}");
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            format!("token-{i}\n"),
            "job {i} got its own output"
        );
        assert_eq!(a["digest"].as_str().unwrap(), sha256_file(path));
        let v = stack.verify(
            a["provenance"].as_str().unwrap(),
            path,
            &format!("git+https://github.com/cloister-dev/job{i}"),
            &[],
        );
        assert_eq!(
            v["verified"], true,
            "job {i}'s provenance is for its own artifact and source: {v}"
        );
        let commit = git(repo, &["rev-parse", "HEAD"]);
        let provenance = std::fs::read_to_string(a["provenance"].as_str().unwrap()).unwrap();
        assert!(!provenance.is_empty());
        assert!(
            stack.log(id).contains(&commit),
            "job {i}'s log names its commit"
        );
    }
}
