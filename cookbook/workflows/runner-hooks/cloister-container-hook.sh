#!/bin/bash
# Cloister's container hooks for a GitHub Actions self-hosted runner
# labelled `isolated`: every step of every job runs in a Cloister sandbox
# (the job container's image from the runner's image store, no network but
# for the steps of the allow-listed actions below).
#
# Install (see cookbook/runbook-github-runner.md):
#   install -m 0755 cloister-container-hook.sh /usr/local/lib/cloister/github/
#   and in the runner's .env:
#     ACTIONS_RUNNER_CONTAINER_HOOKS=/usr/local/lib/cloister/github/cloister-container-hook.sh
#     ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER=true
#
# The runner runs this script with bash and one JSON request on stdin; it
# hands the request to `cloister-runner hook` unchanged (exec: same stdin,
# same process, so the runner's SIGINT on a timeout reaches the sandbox).
# Each step pays for this script, so it execs once, straight into the
# binary that holds the subcommand.
#
# Settings live in the lines below, never in the environment: the script
# runs with the runner's environment, so nothing a job could set may choose
# the binary, the store or the hook's records. `exec -c` (bash) hands the
# hook an empty environment.
# The binary holding every subcommand (cloister-runner would exec it).
CLOISTER_RUNNER=/usr/local/bin/cloister-runner-full
CLOISTER_STORE=/var/lib/cloister/runner/store
CLOISTER_HOOK_STATE=/var/lib/cloister/github-hook
CLOISTER_PROFILE=default
# A cgroup delegated to the runner's user when the runner is not root
# (e.g. /system.slice/actions-runner.service/cloister); empty: its own.
CLOISTER_CGROUP_PARENT=
# Bound into every step (read-only): the runner daemon's API socket (the
# release workflow submits its build through it) and the attestor's public
# key (it verifies the provenance with it). Empty: not bound.
CLOISTER_DAEMON_SOCKET=/run/cloister-runner/api.sock
CLOISTER_TRUSTED_KEY=/etc/cloister/attestor-public.pem
# The network allow-list: the script steps of these actions (each
# OWNER/REPO@<40-hex commit SHA>, space separated) share the host's network;
# every other step has none. Empty: no step gets a network. A tag, a branch
# or a short SHA is refused, and every job then fails to start. For
# org.release.hermetic.yml, the two actions it pins (keep them in step with
# the workflow; cookbook/runbook-github-runner.md, "The network"):
# CLOISTER_NETWORK_ACTIONS="actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f"
CLOISTER_NETWORK_ACTIONS=

set -- hook --store "$CLOISTER_STORE" --state-dir "$CLOISTER_HOOK_STATE" --profile "$CLOISTER_PROFILE"
if [ -n "$CLOISTER_CGROUP_PARENT" ]; then
    set -- "$@" --cgroup-parent "$CLOISTER_CGROUP_PARENT"
fi
if [ -n "$CLOISTER_DAEMON_SOCKET" ]; then
    set -- "$@" --daemon-socket "$CLOISTER_DAEMON_SOCKET"
fi
if [ -n "$CLOISTER_TRUSTED_KEY" ]; then
    set -- "$@" --trusted-key "$CLOISTER_TRUSTED_KEY"
fi
set -f # the allow-list is split on spaces, never globbed
for action in $CLOISTER_NETWORK_ACTIONS; do
    set -- "$@" --network-action "$action"
done
exec -c "$CLOISTER_RUNNER" "$@"
