"""Writes an ECDSA P-256 key in cosign's encrypted format, independently of
Cloister's code: PKCS#8 DER from `cryptography`, scrypt from hashlib, NaCl
secretbox from PyNaCl, JSON as go-securesystemslib's `encrypted` package
writes it, in a PEM block labelled "ENCRYPTED SIGSTORE PRIVATE KEY".

usage: python make_cosign_key.py PASSWORD OUT.key OUT.pub.pem
"""

import base64
import hashlib
import json
import os
import sys

import nacl.secret
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


def b64(data: bytes) -> str:
    return base64.standard_b64encode(data).decode()


def main() -> None:
    password, out_key, out_pub = sys.argv[1:]
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    salt = os.urandom(32)
    n, r, p = 32768, 8, 1
    secret = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)
    nonce = os.urandom(24)
    sealed = nacl.secret.SecretBox(secret).encrypt(der, nonce)
    body = json.dumps(
        {
            "kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p}, "salt": b64(salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
            "ciphertext": b64(sealed.ciphertext),
        }
    ).encode()
    lines = [b64(body)[i : i + 64] for i in range(0, len(b64(body)), 64)]
    pem = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    fd = os.open(out_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    with open(out_pub, "wb") as f:
        f.write(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))


if __name__ == "__main__":
    main()
