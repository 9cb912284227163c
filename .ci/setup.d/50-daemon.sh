# Runner daemon (issue 5): what its tests and the repo A/B/C end-to-end
# builds need. Sourced by .ci/run (bash, set -euo pipefail, as root, after
# 00-base.sh ran apt-get update). Idempotent.
#   systemd  systemd-analyze verify and systemd-sysusers for the unit tests
#   make gcc repo C (C with make) and the linker for repo A (cargo)
#   nodejs npm  repo B (npm package built offline); skipped when node and
#            npm are already installed (e.g. from another source)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends systemd make gcc libc6-dev git >/dev/null
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
command -v systemd-analyze >/dev/null
echo "daemon: systemd-analyze $(systemd-analyze --version | head -n1 | cut -d' ' -f2), node $(node --version), npm $(npm --version), make $(make --version | head -n1 | cut -d' ' -f3)"
