# Trust portal (issue 17): the browser tests (attestor/tests/browser) drive
# Debian's Chromium through its WebDriver server, chromedriver, from
# `cargo test` (fantoccini). Both come from Debian's archive so that their
# versions always match each other. Sourced by .ci/run (bash, set -euo
# pipefail, as root, after 00-base.sh ran apt-get update). Idempotent.
# Exports the two paths the tests read; they fail loudly without them.
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
export CLOISTER_TEST_CHROMIUM="$(command -v chromium)"
export CLOISTER_TEST_CHROMEDRIVER="$(command -v chromedriver)"
echo "portal: $("$CLOISTER_TEST_CHROMIUM" --version 2>/dev/null | head -n1), $("$CLOISTER_TEST_CHROMEDRIVER" --version | head -n1 | cut -d' ' -f1-2)"
