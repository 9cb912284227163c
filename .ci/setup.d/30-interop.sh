# External verifiers for the attestor's interop tests (issue 4,
# tests/tests/interop.rs): securesystemslib (+ cryptography, PyNaCl) in a
# Python venv from PyPI, and sigstore-js (@sigstore/verify and what it needs)
# from npm, both pinned (tests/interop/requirements.txt, package-lock.json).
# Sourced by .ci/run (bash, set -euo pipefail, as root, after apt-get update).
# Exports the paths the tests read; the tests fail loudly without them.
# The key-exchange tests also use the openssl command. Idempotent.
export DEBIAN_FRONTEND=noninteractive
INTEROP_DIR="${CLOISTER_INTEROP_DIR:-/opt/cloister-interop}"

# Python with venv support and Node.js with npm (Debian's, unless present).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
if ! command -v openssl >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

mkdir -p "$INTEROP_DIR"
if [ ! -x "$INTEROP_DIR/venv/bin/python" ]; then
    python3 -m venv "$INTEROP_DIR/venv"
fi
"$INTEROP_DIR/venv/bin/pip" install -q --disable-pip-version-check -r tests/interop/requirements.txt

mkdir -p "$INTEROP_DIR/npm"
cp tests/interop/package.json tests/interop/package-lock.json "$INTEROP_DIR/npm/"
(cd "$INTEROP_DIR/npm" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

export CLOISTER_INTEROP_PYTHON="$INTEROP_DIR/venv/bin/python"
export CLOISTER_INTEROP_NODE_MODULES="$INTEROP_DIR/npm/node_modules"
echo "interop: python $("$CLOISTER_INTEROP_PYTHON" --version 2>&1), node $(node --version), modules in $CLOISTER_INTEROP_NODE_MODULES"
