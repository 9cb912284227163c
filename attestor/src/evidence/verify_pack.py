"""Offline check of an extracted Cloister evidence pack with securesystemslib,
independently of Cloister's own tools.

usage: python3 verify_pack.py PACK_DIR PUBLIC.pem [PUBLIC.pem ...]
       (pip install securesystemslib cryptography)

Checks: MANIFEST.dsse.json is a DSSE envelope signed by one of the keys and
its payload is exactly MANIFEST.json; every file the manifest lists has its
sha256 (appendix files may differ: reported, accepted); no file is there
that the manifest does not list (appendix excepted); every provenance
envelope (*.intoto.jsonl) and the signed policy manifest verify with the
keys. Exit 0 and "OK ..." when everything holds, 1 with the reason otherwise.
"""

import hashlib
import json
import pathlib
import sys

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def load_key(path):
    public_key = load_pem_public_key(pathlib.Path(path).read_bytes())
    # keyid: hex sha256 of the SPKI DER, as Cloister computes it.
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return SSlibKey.from_crypto(public_key, keyid=hashlib.sha256(spki).hexdigest())


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    root = pathlib.Path(sys.argv[1])
    keys = [load_key(p) for p in sys.argv[2:]]

    envelope = Envelope.from_dict(json.loads((root / "MANIFEST.dsse.json").read_text()))
    envelope.verify(keys, 1)
    if envelope.payload != (root / "MANIFEST.json").read_bytes():
        raise ValueError("MANIFEST.json is not the payload MANIFEST.dsse.json signs")
    manifest = json.loads(envelope.payload)

    listed = set()
    for entry in manifest["files"]:
        path = root / entry["path"]
        listed.add(entry["path"])
        editable = entry.get("editable", False)
        if not path.is_file():
            if editable:
                print(f"EDITED (removed) {entry['path']}")
                continue
            raise ValueError(f"{entry['path']}: missing")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            if editable:
                print(f"EDITED {entry['path']}")
                continue
            raise ValueError(f"{entry['path']}: sha256 {digest}, manifest says {entry['sha256']}")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in ("MANIFEST.json", "MANIFEST.dsse.json") or rel in listed:
            continue
        if rel.startswith("appendix/"):
            print(f"EDITED (added) {rel}")
            continue
        raise ValueError(f"{rel}: not in the manifest")

    count = 0
    for path in sorted(root.rglob("*.intoto.jsonl")):
        for line in path.read_text().split("\n"):
            if line.strip():
                Envelope.from_dict(json.loads(line)).verify(keys, 1)
                count += 1
    policy = root / "policies" / "manifest.dsse.json"
    if policy.is_file():
        Envelope.from_dict(json.loads(policy.read_text())).verify(keys, 1)
    print(f"OK manifest, {len(listed)} files, {count} provenance envelope(s)"
          f"{', policy manifest' if policy.is_file() else ''}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure is a rejection
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
