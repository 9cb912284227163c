"""Verifies a .intoto.jsonl file (exactly one DSSE envelope) with
securesystemslib: Envelope.verify with a key from SSlibKey.from_crypto.

usage: python verify_envelope.py FILE.intoto.jsonl PUBLIC.pem
exit 0 and "OK <keyid>" when it verifies; exit 1 with the error otherwise.
"""

import hashlib
import json
import sys

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def main() -> None:
    if len(sys.argv) != 3:
        print("usage: verify_envelope.py FILE.intoto.jsonl PUBLIC.pem", file=sys.stderr)
        sys.exit(2)
    jsonl_path, pem_path = sys.argv[1:]
    with open(pem_path, "rb") as f:
        public_key = load_pem_public_key(f.read())
    # keyid computed independently: hex sha256 of the SPKI DER.
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    keyid = hashlib.sha256(spki).hexdigest()
    key = SSlibKey.from_crypto(public_key, keyid=keyid)

    with open(jsonl_path, "r", encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected one envelope line, found {len(lines)}")
    envelope = Envelope.from_dict(json.loads(lines[0]))
    envelope.verify([key], 1)
    statement = json.loads(envelope.payload)
    if statement["_type"] != "https://in-toto.io/Statement/v1":
        raise ValueError(f"unexpected _type {statement['_type']}")
    if statement["predicateType"] != "https://slsa.dev/provenance/v1":
        raise ValueError(f"unexpected predicateType {statement['predicateType']}")
    print(f"OK {keyid} {key.scheme}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure as a rejection
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
