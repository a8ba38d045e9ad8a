"""Round trips with the pure-Python clients: kafka-python and aiokafka."""

import asyncio
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTP

from helpers import create_topic, unique_topic


def test_kafka_python_roundtrip_assign_and_seek(broker):
    topic = unique_topic("kp")
    create_topic(broker.bootstrap, topic, partitions=3)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    try:
        futs = [(i, p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 3,
                            headers=[("i", str(i).encode())])) for i in range(300)]
        p.flush(30)
        metas = {i: f.get(timeout=30) for i, f in futs}
    finally:
        p.close(10)
    for part in range(3):
        offs = [metas[i].offset for i in range(part, 300, 3)]
        assert offs == list(range(100)), f"partition {part} offsets {offs[:5]}..."

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        tps = [KTP(topic, part) for part in range(3)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        got = {}
        deadline = time.monotonic() + 30
        while sum(len(v) for v in got.values()) < 300 and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                got.setdefault(tp.partition, []).extend(recs)
        assert sum(len(v) for v in got.values()) == 300
        for part in range(3):
            assert [(r.offset, r.key, r.value, r.headers) for r in got[part]] == [
                (n, f"k{i}".encode(), f"v{i}".encode(), [("i", str(i).encode())])
                for n, i in enumerate(range(part, 300, 3))]

        # seek into the middle of partition 1
        c.assign([KTP(topic, 1)])
        c.seek(KTP(topic, 1), 95)
        recs = []
        deadline = time.monotonic() + 20
        while len(recs) < 5 and time.monotonic() < deadline:
            for rs in c.poll(timeout_ms=500).values():
                recs.extend(rs)
        assert [(r.offset, r.value) for r in recs] == [(n, f"v{1 + 3 * n}".encode()) for n in range(95, 100)]
        assert c.end_offsets([KTP(topic, 1)]) == {KTP(topic, 1): 100}
    finally:
        c.close()


def test_aiokafka_roundtrip_assign(broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    topic = unique_topic("aio")
    create_topic(broker.bootstrap, topic, partitions=2)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=20000)
        await p.start()
        try:
            metas = []
            for i in range(200):
                metas.append(await p.send_and_wait(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                                                   partition=i % 2, headers=[("h", b"%d" % i)]))
            batch = p.create_batch()
            for i in range(200, 250):
                assert batch.append(key=None, value=f"v{i}".encode(), timestamp=None) is not None
            fut = await p.send_batch(batch, topic, partition=0)
            batch_meta = await fut
        finally:
            await p.stop()
        assert [m.offset for m in metas[0::2]] == list(range(100))
        assert [m.offset for m in metas[1::2]] == list(range(100))
        assert batch_meta.offset == 100

        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            tps = [ATP(topic, 0), ATP(topic, 1)]
            c.assign(tps)
            for tp in tps:
                c.seek(tp, 0)
            got = {0: [], 1: []}
            deadline = time.monotonic() + 30
            while len(got[0]) + len(got[1]) < 250 and time.monotonic() < deadline:
                res = await c.getmany(timeout_ms=500)
                for tp, recs in res.items():
                    got[tp.partition].extend(recs)
            end = await c.end_offsets(tps)
        finally:
            await c.stop()
        return got, end

    got, end = asyncio.run(asyncio.wait_for(run(), 90))
    assert end == {ATP(topic, 0): 150, ATP(topic, 1): 100}
    assert [(r.offset, r.key, r.value, list(r.headers)) for r in got[1]] == [
        (n, f"k{i}".encode(), f"v{i}".encode(), [("h", b"%d" % i)]) for n, i in enumerate(range(1, 200, 2))]
    p0 = got[0]
    assert [(r.offset, r.value) for r in p0[:100]] == [(n, f"v{i}".encode()) for n, i in enumerate(range(0, 200, 2))]
    assert [(r.offset, r.key, r.value) for r in p0[100:]] == [(100 + n, None, f"v{200 + n}".encode())
                                                             for n in range(50)]
