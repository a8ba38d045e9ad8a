#!/usr/bin/env python3
"""The cost of transactions on one broker (issue 13): confluent-kafka's produce throughput
without transactions (idempotent, acks=all), with one transaction per 10,000 records and one
per 100 records; then the fetch throughput of read_committed against read_uncommitted over
the log those transactions left (markers and aborted transactions included).

    python bench/transactions.py --strom target/release/strom            # bench/TRANSACTIONS.md
    python bench/transactions.py --strom target/release/strom --smoke    # quick; bench/out/transactions.md

Each figure is given with its ratio to the same run's non-transactional baseline, the
machine's own limit for this client on this broker: clients and broker share the machine, so
absolute figures say what this machine does, the ratios what transactions cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from groups import Broker, create_topic, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
VALUE = b"x" * 100


def produce(bootstrap: str, topic: str, records: int, per_txn: int | None) -> float:
    """Records per second for `records` records, `per_txn` of them per transaction (None: no
    transactions, the idempotent producer alone)."""
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 200000}
    if per_txn is not None:
        conf.update({"transactional.id": "bench-" + uuid.uuid4().hex[:8], "transaction.timeout.ms": 60000})
    p = Producer(conf)
    if per_txn is not None:
        p.init_transactions(30)
    started = time.monotonic()
    sent = 0
    while sent < records:
        n = min(per_txn or records, records - sent)
        if per_txn is not None:
            p.begin_transaction()
        for i in range(n):
            while True:
                try:
                    p.produce(topic, value=VALUE, partition=(sent + i) % PARTITIONS)
                    break
                except BufferError:
                    p.poll(0.01)
        if per_txn is not None:
            p.commit_transaction(60)
        sent += n
    if p.flush(60) != 0:
        raise RuntimeError("produce did not finish")
    return records / (time.monotonic() - started)


def fetch(bootstrap: str, topic: str, isolation: str) -> tuple[float, int]:
    """Records per second reading the whole topic from the start, and how many were read."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex[:6],
                  "isolation.level": isolation, "enable.partition.eof": True,
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    eof, read = set(), 0
    started = time.monotonic()
    deadline = started + 300
    while len(eof) < PARTITIONS and time.monotonic() < deadline:
        for m in c.consume(num_messages=10000, timeout=0.5):
            err = m.error()
            if err is None:
                read += 1
            elif err.code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
            else:
                raise KafkaException(err)
    elapsed = time.monotonic() - started
    c.close()
    if len(eof) < PARTITIONS:
        raise RuntimeError(f"fetch ({isolation}) did not reach the end: {read} records")
    return read / elapsed, read


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strom", default=str(ROOT / "target/release/strom"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--records", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--out")
    opts = ap.parse_args()
    records = opts.records or (20_000 if opts.smoke else 200_000)
    rounds = opts.rounds or (1 if opts.smoke else 3)
    out = Path(opts.out) if opts.out else (
        ROOT / "bench/out/transactions.md" if opts.smoke else ROOT / "bench/TRANSACTIONS.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    b = Broker(opts.strom)
    rows = []
    try:
        topic = "txn-bench"
        create_topic(b.bootstrap, topic, PARTITIONS)
        # Unmeasured: the first producer also pays for metadata, leaders and the coordinator.
        produce(b.bootstrap, topic, min(records, 10_000), None)
        produce(b.bootstrap, topic, min(records, 10_000), 1_000)
        for label, per_txn in [("no transactions (idempotent)", None),
                               ("one transaction per 10,000 records", 10_000),
                               ("one transaction per 100 records", 100)]:
            rates = [produce(b.bootstrap, topic, records, per_txn) for _ in range(rounds)]
            rows.append((label, rates))
            print(f"{label}: {[round(r) for r in rates]} records/s", flush=True)
        fetch_rows = []
        for isolation in ("read_uncommitted", "read_committed"):
            rates, counts = zip(*[fetch(b.bootstrap, topic, isolation) for _ in range(rounds)])
            fetch_rows.append((isolation, list(rates), counts[0]))
            print(f"fetch {isolation}: {[round(r) for r in rates]} records/s ({counts[0]} records)", flush=True)
    finally:
        b.stop()
    base = statistics.median(rows[0][1])
    fetch_base = statistics.median(fetch_rows[0][1])
    import confluent_kafka
    binary = "release" if "release" in opts.strom else "debug"
    lines = [
        "# The cost of transactions on one Strom broker",
        "",
        f"Written by `bench/transactions.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"{' (smoke run)' if opts.smoke else ''}, **{binary} build** of strom.",
        f"Machine: {machine()}; load average at the start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        f" (1/5/15 min). Clients (confluent-kafka {confluent_kafka.version()[0]}, librdkafka"
        f" {confluent_kafka.libversion()[0]}) share the machine with the broker.",
        "",
        f"## Produce: {records:,} records of {len(VALUE)} B per round, {PARTITIONS} partitions, acks=all,"
        " idempotent",
        "",
        "Ratio: to the same run's median without transactions.",
        "",
        "| producer | rounds | median records/s | min | max | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for label, rates in rows:
        med = statistics.median(rates)
        lines.append(f"| {label} | {len(rates)} | {med:,.0f} | {min(rates):,.0f} | {max(rates):,.0f} |"
                     f" {med / base:.2f} |")
    lines += [
        "",
        "## Fetch: the whole topic from the start, one consumer",
        "",
        "The topic holds every round above (and the warm-up's): the non-transactional records,",
        "the committed transactions and their COMMIT markers. Ratio: to read_uncommitted in the same run.",
        "",
        "| isolation.level | records read | median records/s | min | max | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for isolation, rates, count in fetch_rows:
        med = statistics.median(rates)
        lines.append(f"| {isolation} | {count:,} | {med:,.0f} | {min(rates):,.0f} | {max(rates):,.0f} |"
                     f" {med / fetch_base:.2f} |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
