# Workflow checkers for the GitHub Actions integration (issue 19,
# tests/tests/github/workflows.rs): check-jsonschema (GitHub's workflow
# schema, vendored: `--builtin-schema vendor.github-workflows`) and zizmor
# (`--offline` audits), pinned in tests/github/requirements.txt, in a venv
# from PyPI. The hook tests also validate the prepare_job response with
# check-jsonschema. Sourced by .ci/run (bash, set -euo pipefail, as root).
# Exports CLOISTER_GITHUB_TOOLS (the venv's bin directory); the tests fail
# loudly without it. Idempotent.
export DEBIAN_FRONTEND=noninteractive
GITHUB_TOOLS_DIR="${CLOISTER_GITHUB_TOOLS_DIR:-/opt/cloister-github}"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
mkdir -p "$GITHUB_TOOLS_DIR"
if [ ! -x "$GITHUB_TOOLS_DIR/venv/bin/python" ]; then
    python3 -m venv "$GITHUB_TOOLS_DIR/venv"
fi
"$GITHUB_TOOLS_DIR/venv/bin/pip" install -q --disable-pip-version-check -r tests/github/requirements.txt

export CLOISTER_GITHUB_TOOLS="$GITHUB_TOOLS_DIR/venv/bin"
echo "github: $("$CLOISTER_GITHUB_TOOLS/check-jsonschema" --version 2>&1 | head -1), $("$CLOISTER_GITHUB_TOOLS/zizmor" --version 2>&1 | head -1)"
