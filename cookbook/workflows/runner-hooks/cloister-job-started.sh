#!/bin/bash
# ACTIONS_RUNNER_HOOK_JOB_STARTED on an isolated runner: before each job,
# check the host with `cloister-runner doctor` (a sandbox starts with the
# profile's limits, the runner daemon and the attestor answer, the image
# store holds images, disk space, the hook's state is private, the runner's
# .env names the hooks and requires job containers). Any failure fails the
# job before a step runs; the "Pre Job Hook" step of the job log shows each
# check. The runner runs this script with `bash -e`, as its own user,
# outside any container.
#
# Settings live here, not in the environment (see cloister-container-hook.sh).
CLOISTER_RUNNER=/usr/local/bin/cloister-runner
CLOISTER_RUNNER_CONFIG=/etc/cloister/runner.toml
CLOISTER_ATTESTOR_URL=http://127.0.0.1:8450
CLOISTER_HOOK_STATE=/var/lib/cloister/github-hook
CLOISTER_PROFILE=default
CLOISTER_CGROUP_PARENT=
CLOISTER_MIN_FREE=10G
ACTIONS_RUNNER_DIR=/home/github-runner/actions-runner

set -- doctor --config "$CLOISTER_RUNNER_CONFIG" --attestor-url "$CLOISTER_ATTESTOR_URL" \
    --hook-state "$CLOISTER_HOOK_STATE" --profile "$CLOISTER_PROFILE" \
    --min-free "$CLOISTER_MIN_FREE" --runner-dir "$ACTIONS_RUNNER_DIR"
if [ -n "$CLOISTER_CGROUP_PARENT" ]; then
    set -- "$@" --cgroup-parent "$CLOISTER_CGROUP_PARENT"
fi
exec -c "$CLOISTER_RUNNER" "$@"
