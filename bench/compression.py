#!/usr/bin/env python3
"""The cost of re-compression on produce: throughput and broker CPU of a producer sending lz4
into a zstd topic (decompress, re-encode, re-compress on append), against codecs that match
(zstd into zstd, lz4 into the default `producer` topic: batches stored as sent, in place).

    python bench/compression.py --strom target/release/strom            # writes bench/COMPRESSION.md
    python bench/compression.py --strom target/release/strom --smoke    # quick; bench/out/compression.md

Needs confluent-kafka (the test venv has it: .venv/bin/python bench/compression.py ...). The
cases run interleaved, several rounds, each on its own fresh topic, so load from elsewhere on
the machine spreads over all of them; figures are medians, and ratios are taken within the
same run. Clients and broker share the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent

# (name, topic compression.type, producer compression.type)
CASES = [
    ("lz4 into a producer topic (as sent)", "producer", "lz4"),
    ("zstd into a zstd topic (codecs match)", "zstd", "zstd"),
    ("lz4 into a zstd topic (re-compressed)", "zstd", "lz4"),
    ("none into a zstd topic (compressed)", "zstd", "none"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def payloads(n: int, size: int) -> list[bytes]:
    """Text-like values (words from a small vocabulary): they compress about 3:1, as logs
    and JSON do."""
    rng = random.Random(42)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(2000)]
    out = []
    for _ in range(n):
        s = []
        while sum(len(w) + 1 for w in s) < size:
            s.append(rng.choice(words))
        out.append(" ".join(s).encode()[:size])
    return out


def produce(bootstrap: str, topic: str, codec: str, values: list[bytes], total: int) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "compression.type": codec, "batch.size": 1 << 20, "enable.idempotence": True,
                  "queue.buffering.max.kbytes": 1 << 20})
    failed = []

    def cb(err, _msg):
        if err is not None:
            failed.append(err)

    start = time.monotonic()
    for i in range(total):
        while True:
            try:
                p.produce(topic, value=values[i % len(values)], key=str(i).encode(), partition=0, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.005)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(120) != 0 or failed:
        raise RuntimeError(f"produce to {topic}: {len(failed)} failed, e.g. {failed[:1]}")
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strom", default=str(ROOT / "target/release/strom"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.messages = 1, 20_000

    data = Path(tempfile.mkdtemp(prefix="strom-bench-compression-"))
    port = free_port()
    broker = subprocess.Popen(
        [args.strom, "serve", "--data-dir", str(data), "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
         "--override", "admin.http.listener="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        values = payloads(1000, args.size)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in CASES}
        for rnd in range(args.rounds):
            order = CASES if rnd % 2 == 0 else list(reversed(CASES))
            for name, topic_codec, producer_codec in order:
                topic = f"bench-{topic_codec}-{producer_codec}-{uuid.uuid4().hex[:6]}"
                admin.create_topics([NewTopic(topic, 1, 1, config={"compression.type": topic_codec})])[topic].result(30)
                time.sleep(0.5)
                cpu0 = cpu_seconds(broker.pid)
                elapsed = produce(bootstrap, topic, producer_codec, values, args.messages)
                cpu = cpu_seconds(broker.pid) - cpu0
                results[name].append((args.messages / elapsed, cpu / args.messages * 1e6))
                print(f"round {rnd}: {name}: {args.messages / elapsed:,.0f} msg/s, "
                      f"broker {cpu / args.messages * 1e6:.1f} µs CPU/msg", flush=True)
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(data, ignore_errors=True)

    def med(name):
        return (statistics.median(r for r, _ in results[name]), statistics.median(c for _, c in results[name]))

    base_rate, base_cpu = med(CASES[0][0])
    # Same stored codec, same bytes on disk: the difference is the broker's re-compression.
    match_rate, match_cpu = med(CASES[1][0])
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    lines = [
        "# Re-compression on produce",
        "",
        f"`bench/compression.py`: one idempotent confluent-kafka producer (acks=all, linger 5 ms), "
        f"{args.messages:,} text-like messages of {args.size} B (about 3:1 compressible) per case, "
        f"one partition, {args.rounds} interleaved rounds, medians; a fresh topic per case and round.",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu_model}), {platform.system()} {platform.release()}; "
        f"load average at the end {os.getloadavg()[0]:.1f} (other work shares the machine, "
        "so the ratios matter more than the absolute figures); broker "
        f"`{Path(args.strom).name}` from `{Path(args.strom).parent.name}`.",
        "",
        "| case | msg/s | vs as sent | vs zstd into zstd | broker CPU µs/msg | vs as sent | vs zstd into zstd |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, _ in CASES:
        rate, cpu = med(name)
        lines.append(f"| {name} | {rate:,.0f} | {rate / base_rate:.2f} | {rate / match_rate:.2f} | {cpu:.2f} "
                     f"| {cpu / base_cpu:.1f} | {cpu / match_cpu:.1f} |")
    lines += [
        "",
        "Each round's figures: " + "; ".join(
            f"{name}: " + ", ".join(f"{r:,.0f}" for r, _ in results[name]) for name, _, _ in CASES) + " msg/s.",
        "",
        "The producer's own compression shows in the first two rows (zstd costs the client more "
        "than lz4); the broker's re-compression is the difference between the second and third "
        "rows, which store the same codec. Matching codecs keep the in-place path (no "
        "decompression, offsets and leader epoch patched in the header); any other codec is "
        "decompressed, re-encoded with consecutive offsets and compressed at the topic's level "
        "(`compression.zstd.level`, default 3) under the partition's log lock.",
        "",
    ]
    out = ROOT / ("bench/out/compression.md" if args.smoke else "bench/COMPRESSION.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
