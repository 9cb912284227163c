# Base packages every area needs. Sourced by .ci/run (bash, set -euo pipefail).
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
    echo "CI setup must run as root (it installs packages and creates test users)" >&2
    exit 1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates git util-linux procps >/dev/null
