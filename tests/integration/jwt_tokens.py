"""JWTs for the OAUTHBEARER tests: RSA signers made with the openssl command line, their JWKs,
and RS256 tokens signed by them (the claims Strom's test brokers expect by default)."""

import base64
import json
import subprocess
import time
from pathlib import Path

AUDIENCE = "strom"
ISSUER = "https://issuer.example"


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def signer(d: Path, kid: str, name: str | None = None):
    """An RSA key with its JWK and a function signing tokens with it (kid in the header).
    `name` (default: the kid) names the key file, so two keys may claim one kid."""
    keyfile = Path(d) / f"{name or kid}.key"
    subprocess.run(["openssl", "genrsa", "-out", str(keyfile), "2048"], check=True, capture_output=True)
    modulus = subprocess.run(["openssl", "rsa", "-in", str(keyfile), "-noout", "-modulus"],
                             check=True, capture_output=True).stdout.decode().strip().split("=", 1)[1]
    jwk = {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
           "n": b64url(bytes.fromhex(modulus)), "e": b64url((65537).to_bytes(3, "big"))}

    def token(sub="svc-orders", lifetime_s=600, aud=AUDIENCE, iss=ISSUER):
        now = int(time.time())
        head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
        body = b64url(json.dumps({"sub": sub, "aud": aud, "iss": iss, "iat": now,
                                  "exp": now + lifetime_s}).encode())
        signed = f"{head}.{body}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(keyfile)], input=signed,
                             check=True, capture_output=True).stdout
        return f"{head}.{body}.{b64url(sig)}", now + lifetime_s

    return jwk, token


def write_jwks(path: Path, *jwks) -> Path:
    Path(path).write_text(json.dumps({"keys": list(jwks)}))
    return Path(path)
