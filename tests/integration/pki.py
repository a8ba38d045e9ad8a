"""A throwaway PKI for the TLS and SASL_SSL tests, made with the openssl command line."""

import subprocess
from pathlib import Path

from conftest import free_port


def _run(*args: str, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def ca(self, name: str) -> Path:
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30", "-subj", f"/CN={name}",
             cwd=self.root)
        return self.root / f"{name}.pem"

    def leaf(self, name: str, ca: str, subject: str, sans: str | None = None, days: int = 30) -> Path:
        """A key and a certificate signed by `ca`, in one PEM (key first, then the chain):
        Kafka's ssl.keystore.location for ssl.keystore.type=PEM. A negative `days` gives a
        certificate that has already expired."""
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=self.root)
        ext = self.root / f"{name}.ext"
        ext.write_text(f"subjectAltName={sans}\n" if sans else "basicConstraints=CA:FALSE\n")
        _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), "-extfile", ext.name,
             cwd=self.root)
        combined = self.root / f"{name}.pem"
        combined.write_text((self.root / f"{name}.key").read_text() + (self.root / f"{name}.crt").read_text())
        return combined

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"


def make_pki(root: Path) -> Pki:
    pki = Pki(root)
    pki.ca("ca")
    pki.ca("otherca")
    pki.leaf("server", "ca", "/CN=localhost", "DNS:localhost,IP:127.0.0.1")
    pki.leaf("wronghost", "ca", "/CN=wrong.example", "DNS:wrong.example")
    pki.leaf("expired", "ca", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", days=-1)
    pki.leaf("alice", "ca", "/O=Strom/OU=eng/CN=alice")
    pki.leaf("mallory", "otherca", "/CN=mallory")
    pki.leaf("server2", "otherca", "/CN=localhost", "DNS:localhost,IP:127.0.0.1")
    return pki


def secure_listeners(**ports: int) -> dict[str, str]:
    """listeners and advertised.listeners for PLAINTEXT plus the named extra listeners."""
    items = [f"{name}://127.0.0.1:{port}" for name, port in ports.items()]
    return {"listeners": ",".join(items), "advertised.listeners": ",".join(items)}


def ports(*names: str) -> dict[str, int]:
    return {n: free_port() for n in names}
