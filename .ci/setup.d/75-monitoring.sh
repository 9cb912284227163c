# Monitoring (issue 20): promtool, to check and unit-test the Prometheus
# recording and alert rules in systemd/monitoring/. Sourced by .ci/run (bash,
# set -euo pipefail, as root, after apt-get update). Idempotent.
#   prometheus   Debian's package ships promtool (`promtool check rules`,
#                `promtool test rules`, `check config`) and the server, which
#                the scrape test runs itself (beside promtool) against both
#                daemons; no service is started here.
#   curl         the tests' HTTP client (also over the runner's Unix socket).
# Exports CLOISTER_PROMTOOL; the monitoring tests fail loudly without it.
export DEBIAN_FRONTEND=noninteractive
if ! command -v promtool >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends prometheus curl >/dev/null
fi
export CLOISTER_PROMTOOL="$(command -v promtool)"
echo "monitoring: $("$CLOISTER_PROMTOOL" --version 2>&1 | head -n1)"
