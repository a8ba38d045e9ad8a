"""PLAINTEXT vs SSL produce and consume throughput with kcat (issue 14's cost of TLS).

    STROM_BIN=target/release/strom .venv/bin/python tests/integration/bench_tls.py [MiB]

Starts one broker with a PLAINTEXT and an SSL listener (certificates made with openssl), then
for each: produces MiB of 1 KiB records with kcat (uncompressed) and consumes them back, timing each.
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

import subprocess

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Broker, free_port  # noqa: E402
from helpers import KCAT, create_topic  # noqa: E402
from pki import make_pki, secure_listeners  # noqa: E402


def run(bootstrap: str, x: list[str], topic: str, data: Path, mib: int) -> tuple[float, float]:
    """kcat (librdkafka, C) on both sides, so the clients cost little next to the broker."""
    started = time.monotonic()
    subprocess.run([KCAT, "-P", "-b", bootstrap, "-t", topic, "-z", "none", "-X", "linger.ms=5",
                    "-X", "batch.size=1048576", "-l", str(data), *x], check=True, timeout=1800)
    produce_s = time.monotonic() - started
    started = time.monotonic()
    out = subprocess.run([KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                          "-X", "fetch.max.bytes=52428800", *x],
                         check=True, timeout=1800, stdout=subprocess.PIPE).stdout
    consume_s = time.monotonic() - started
    assert out.count(b"\n") == mib * 1024, out.count(b"\n")
    return mib / produce_s, mib / consume_s


def main():
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    root = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    pki = make_pki(root / "pki")
    plain, tls = free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SSL=tls)
    overrides["ssl.keystore.location"] = str(pki.root / "server.pem")
    data = root / "records.txt"
    with open(data, "wb") as f:
        line = b"x" * 1023 + b"\n"
        for _ in range(mib):
            f.write(line * 1024)
    b = Broker(root / "broker", overrides=overrides, port=plain).start()
    try:
        ssl_x = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.root / 'ca.pem'}"]
        for name, bootstrap, x in [("PLAINTEXT", f"127.0.0.1:{plain}", []),
                                   ("SSL", f"127.0.0.1:{tls}", ssl_x)]:
            topic = f"bench-{name.lower()}"
            create_topic(f"127.0.0.1:{plain}", topic)
            prod, cons = run(bootstrap, x, topic, data, mib)
            print(f"{name}: produce {prod:.1f} MiB/s, consume {cons:.1f} MiB/s ({mib} MiB of 1 KiB records)",
                  flush=True)
    finally:
        b.stop()
        # The broker's data is 2 × MiB: never leave it in /tmp.
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
