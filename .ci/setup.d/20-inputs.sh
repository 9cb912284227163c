# Hermetic inputs (issue 3): packages the snapshot/store/image tests use.
# Sourced by .ci/run (bash, set -euo pipefail, as root, after apt-get update).
# - tar, gzip: the GNU tar equivalence tests run the documented command line
# - busybox-static: the OCI image tests build tiny image layouts from it
# - util-linux (`script`): the progress test gives the CLI a pseudo-terminal
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends tar gzip busybox-static util-linux coreutils >/dev/null
export CLOISTER_TEST_BUSYBOX=/bin/busybox
test -x "$CLOISTER_TEST_BUSYBOX"
