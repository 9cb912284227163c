# Hermetic inputs (issue 3): packages the snapshot/store/image tests use.
# Sourced by .ci/run (bash, set -euo pipefail, as root, after apt-get update).
# - tar, gzip: the GNU tar equivalence tests run the documented command line
# - busybox-static: the OCI image tests build tiny image layouts from it
# - util-linux (`script`): the progress test gives the CLI a pseudo-terminal
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends tar gzip busybox-static util-linux coreutils >/dev/null
export CLOISTER_TEST_BUSYBOX=/bin/busybox
test -x "$CLOISTER_TEST_BUSYBOX"

# Vendoring recipes (cookbook/vendoring-*.md): the toolchains, and the
# "vendor" step of each recipe, which is the only one that needs a registry.
# The tests then snapshot these directories and build offline in the sandbox.
# Inside the sandbox only host /usr is visible, so the tests use Debian's
# /usr/bin/{go,node,npm,python3} (a node from another apt source is fine).
apt-get install -y -qq --no-install-recommends golang-go python3 python3-pip >/dev/null
command -v node >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
command -v pnpm >/dev/null || npm install -g --silent pnpm@9 >/dev/null
CLOISTER_TEST_VENDOR_CACHE=/var/cache/cloister-tests/vendor
export CLOISTER_TEST_VENDOR_CACHE
mkdir -p "$CLOISTER_TEST_VENDOR_CACHE"
_fixtures="$PWD/tests/fixtures"
_work="$(mktemp -d)"
cp -r "$_fixtures/npm-app" "$_work/npm" && cp -r "$_fixtures/npm-app" "$_work/pnpm"
rm -f "$_work/npm/pnpm-lock.yaml" "$_work/pnpm/package-lock.json"
(cd "$_work/npm" && npm ci --silent --ignore-scripts --no-audit --no-fund --cache "$CLOISTER_TEST_VENDOR_CACHE/npm-cache" >/dev/null)
(cd "$_work/pnpm" && pnpm fetch --silent --store-dir "$CLOISTER_TEST_VENDOR_CACHE/pnpm-store" >/dev/null)
/usr/bin/python3 -m pip download --quiet --disable-pip-version-check --require-hashes --only-binary=:all: --no-deps \
    -r "$_fixtures/pip-app/requirements.txt" -d "$CLOISTER_TEST_VENDOR_CACHE/wheelhouse"
rm -rf "$_work"
unset _fixtures _work
