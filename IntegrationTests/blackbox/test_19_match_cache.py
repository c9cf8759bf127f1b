"""16-match-cache: each shard caches the trie match of repeated topics (docs/architecture.md,
"Match cache"). With paho clients on both shards, a publisher repeating one topic must see every
subscription change take effect at once — new subscribers on either shard, unsubscribes, clients
that leave — with the cache on (default) and off (match_cache_entries 0)."""
import subprocess

import pytest

from conftest import APUS_BIN, TIMEOUT, Client, unique


def publish_all(pub, topic, start, count):
    for i in range(start, start + count):
        pub.publish(topic, str(i).encode(), qos=1)   # waits for PUBACK: the broker has routed it


def payloads(client, count):
    return [int(p) for (_, p, _) in client.receive(count)]


def first_message_is_sentinel(client):
    topic, payload, _ = client.receive(1)[0]
    return topic.endswith("/sentinel") and payload == b"end"


@pytest.mark.parametrize("cache", ["default", "off"])
def test_repeated_topic_follows_subscription_changes(make_broker, tmp_path, cache):
    args = []
    if cache == "off":
        conf = tmp_path / "apus.conf"
        conf.write_text("match_cache_entries 0\n")
        args = ["--config", str(conf)]
    b = make_broker(*args)
    base = unique("mc")
    topic = f"{base}/1/t"
    made = []
    try:
        pub = Client(b); made.append(pub)
        a = Client(b); made.append(a)
        a.subscribe(f"{base}/+/t", qos=1)
        a.subscribe(f"{base}/sentinel", qos=1)
        publish_all(pub, topic, 0, 30)
        assert payloads(a, 30) == list(range(30))

        # New subscribers while the topic is hot: several, so both shards have some.
        late = [Client(b) for _ in range(4)]
        made.extend(late)
        for c in late:
            c.subscribe(topic, qos=1)
            c.subscribe(f"{base}/sentinel", qos=1)
        publish_all(pub, topic, 30, 30)
        assert payloads(a, 30) == list(range(30, 60))
        for c in late:
            assert payloads(c, 30) == list(range(30, 60))

        # An unsubscribe and a client that leaves: neither gets anything more.
        a.unsubscribe(f"{base}/+/t")
        gone = late.pop()
        gone.close()
        made.remove(gone)
        publish_all(pub, topic, 60, 30)
        pub.publish(f"{base}/sentinel", b"end", qos=1)
        for c in late:
            assert payloads(c, 30) == list(range(60, 90))
            assert first_message_is_sentinel(c)
        # Messages from one publisher arrive in order: the sentinel first means none of the 30.
        assert first_message_is_sentinel(a)
        b.assert_alive()
    finally:
        for c in made:
            try:
                c.close()
            except Exception:
                pass


def test_match_cache_entries_out_of_range_is_refused(tmp_path):
    conf = tmp_path / "apus.conf"
    conf.write_text("match_cache_entries -1\n")
    r = subprocess.run([APUS_BIN, "--config", str(conf)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0
    assert "match_cache_entries must be 0...1048576" in r.stderr, r.stderr
