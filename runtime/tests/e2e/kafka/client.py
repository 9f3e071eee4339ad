"""The independent Kafka client of the end-to-end tests: kafka-python
(PyPI), run from the tools cache's venv. Prints one JSON document.

  client.py create BOOTSTRAP TOPIC PARTITIONS
  client.py summary BOOTSTRAP TOPIC EXPECTED   every record of TOPIC, summed up
  client.py codecs BOOTSTRAP TOPIC             compression of its record batches
  client.py produce BOOTSTRAP TOPIC N          N records `line i`, keyed `k{i%7}`
  client.py committed BOOTSTRAP GROUP TOPIC    the group's committed offsets

KAFKA_CLIENT_SECURITY, when set, is a JSON object of kafka-python settings
given to every client (security_protocol, ssl_cafile, sasl_mechanism,
sasl_plain_username, sasl_plain_password).
"""

import json
import os
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.partitioner.default import murmur2

SECURITY = json.loads(os.environ.get("KAFKA_CLIENT_SECURITY") or "{}")


def create(bootstrap, topic, partitions):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **SECURITY)
    admin.create_topics([NewTopic(topic, int(partitions), 1)])
    admin.close()
    print(json.dumps({"created": topic}))


def consumer(bootstrap, topic):
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      fetch_max_bytes=16 << 20, max_partition_fetch_bytes=8 << 20, **SECURITY)
    parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    return c, parts


def summary(bootstrap, topic, expected):
    """Reads TOPIC from the start until EXPECTED records or 30 s without
    a new one; sums up what it read."""
    expected = int(expected)
    c, parts = consumer(bootstrap, topic)
    count = 0
    values = {}
    per_partition = {}
    misplaced = 0
    keys = {}
    first = None
    quiet_since = time.time()
    while count < expected and time.time() - quiet_since < 30:
        polled = c.poll(timeout_ms=500, max_records=100000)
        if polled:
            quiet_since = time.time()
        for tp, records in polled.items():
            for r in records:
                count += 1
                v = r.value.decode()
                values[v] = values.get(v, 0) + 1
                per_partition[tp.partition] = per_partition.get(tp.partition, 0) + 1
                if r.key is not None:
                    k = r.key.decode()
                    keys[k] = sorted(set(keys.get(k, []) + [tp.partition]))
                    if (murmur2(r.key) & 0x7FFFFFFF) % len(parts) != tp.partition:
                        misplaced += 1
                if first is None:
                    first = {"value": v, "key": r.key and r.key.decode(),
                             "timestamp": r.timestamp,
                             "headers": [[k, h.decode()] for k, h in r.headers]}
    c.close()
    print(json.dumps({
        "count": count,
        "distinct": len(values),
        "repeated": sum(n - 1 for n in values.values()),
        "partitions": {str(p): n for p, n in sorted(per_partition.items())},
        "keys": keys,
        "misplaced": misplaced,
        "first": first,
        "values_sample": sorted(values)[:3],
        "values": sorted(values) if len(values) <= 50 else None,
    }))


def codecs(bootstrap, topic):
    """The compression codec of every record batch of TOPIC, read as
    kafka-python's fetcher reads it (its MemoryRecords parser)."""
    from kafka.record.memory_records import MemoryRecords

    seen = {}
    original = MemoryRecords.__init__

    def spy(self, buffer):
        original(self, buffer)
        # A second parser over the same bytes, so the fetcher's own is untouched.
        probe = MemoryRecords.__new__(MemoryRecords)
        original(probe, bytes(buffer))
        while True:
            batch = probe.next_batch()
            if batch is None:
                break
            name = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}[batch.compression_type]
            seen[name] = seen.get(name, 0) + 1

    MemoryRecords.__init__ = spy
    c, _ = consumer(bootstrap, topic)
    quiet_since = time.time()
    while time.time() - quiet_since < 3:
        if c.poll(timeout_ms=500):
            quiet_since = time.time()
    c.close()
    print(json.dumps(seen))


def produce(bootstrap, topic, n):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **SECURITY)
    for i in range(int(n)):
        p.send(topic, key=f"k{i % 7}".encode(), value=f"line {i}".encode())
    p.flush()
    p.close()
    print(json.dumps({"produced": int(n)}))


def committed(bootstrap, group, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **SECURITY)
    offsets = admin.list_group_offsets(group)[group]
    admin.close()
    print(json.dumps({str(tp.partition): o.offset for tp, o in offsets.items() if tp.topic == topic}))


if __name__ == "__main__":
    {"create": create, "summary": summary, "codecs": codecs, "produce": produce,
     "committed": committed}[sys.argv[1]](*sys.argv[2:])
