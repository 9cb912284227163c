# Billing (issue 16): what the attestor's billing tests need. Sourced by
# .ci/run (bash, set -euo pipefail, as root, after apt-get update). Idempotent.
#   poppler-utils   pdftotext: invoice PDFs' text as an external tool reads it
#   a Python venv   standardwebhooks (the Standard Webhooks reference
#                   library, verifying our signatures in a real receiver) and
#                   pypdf (text and the embedded invoice.json), pinned in
#                   attestor/tests/billing/requirements.txt
# Exports CLOISTER_BILLING_PYTHON; the tests fail loudly without it.
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
BILLING_DIR="${CLOISTER_BILLING_DIR:-/opt/cloister-billing}"
mkdir -p "$BILLING_DIR"
if [ ! -x "$BILLING_DIR/venv/bin/python" ]; then
    python3 -m venv "$BILLING_DIR/venv"
fi
"$BILLING_DIR/venv/bin/pip" install -q --disable-pip-version-check -r attestor/tests/billing/requirements.txt
export CLOISTER_BILLING_PYTHON="$BILLING_DIR/venv/bin/python"
command -v pdftotext >/dev/null
echo "billing: $("$CLOISTER_BILLING_PYTHON" -c 'import standardwebhooks, pypdf; print("standardwebhooks", "pypdf", pypdf.__version__)'), $(pdftotext -v 2>&1 | head -n1)"
