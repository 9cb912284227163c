# The sandbox's test needs (issue 2). Sourced by .ci/run (bash, set -euo
# pipefail, as root, after apt-get update). Idempotent.
#
# - bubblewrap and hyperfine: the start-up benchmark's anchor and timer
#   (runner/sandbox/examples/bench_startup.rs); bubblewrap also runs the
#   probe suite for the "what bwrap blocks" comparison.
# - busybox-static: a static binary to build a tiny image root filesystem
#   for the rootfs tests.
# - iproute2: `ip` to find the host's interface address the probes target.
# - the unprivileged user the rootless half of the escape suite runs as
#   (the tests drop to it with setpriv). Its cgroup delegation is made per
#   test: the test (root) creates a cgroup below its own, chowns it to this
#   user and removes it afterwards, so no state outlives a test.
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends bubblewrap hyperfine busybox-static iproute2 util-linux >/dev/null

CLOISTER_ROOTLESS_USER="${CLOISTER_ROOTLESS_USER:-cloister-rootless}"
if ! id -u "$CLOISTER_ROOTLESS_USER" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$CLOISTER_ROOTLESS_USER"
fi
export CLOISTER_ROOTLESS_USER

# Unprivileged user namespaces must be available for the rootless suite.
if [ -e /proc/sys/kernel/unprivileged_userns_clone ]; then
    echo 1 > /proc/sys/kernel/unprivileged_userns_clone
fi
if [ "$(cat /proc/sys/user/max_user_namespaces)" -lt 1000 ]; then
    echo 10000 > /proc/sys/user/max_user_namespaces
fi
echo "sandbox: rootless test user $CLOISTER_ROOTLESS_USER ($(id -u "$CLOISTER_ROOTLESS_USER"))"
