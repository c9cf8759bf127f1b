#!/usr/bin/env python3
"""Starts the real apus with each shipped configuration (the image's deploy/docker/apus.conf and
the apus.conf of the ConfigMap in deploy/kubernetes/apus.yaml), its two ports moved to free ones,
and checks what the orchestrators rely on: both listeners bound on 0.0.0.0, the image's
HEALTHCHECK script (deploy/docker/healthcheck.sh) healthy while it runs and unhealthy once it
has stopped, MQTT answering, and a clean exit 0 on SIGTERM.
"""

import os
import re
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apus_proc import REPO, Apus, http_get  # noqa: E402

HEALTHCHECK = os.path.join(REPO, "deploy/docker/healthcheck.sh")
failures = []


def fail(message):
    failures.append(message)
    print("  FAIL " + message)


def configmap_conf():
    with open(os.path.join(REPO, "deploy/kubernetes/apus.yaml")) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc.get("kind") == "ConfigMap":
                return doc["data"]["apus.conf"]
    raise SystemExit("no ConfigMap in deploy/kubernetes/apus.yaml")


def with_ports(text, mqtt_port, http_port):
    """The configuration with `listener 1883 ...` and `http_listener 8080 ...` moved."""
    text, n1 = re.subn(r"(?m)^listener 1883 ", f"listener {mqtt_port} ", text)
    text, n2 = re.subn(r"(?m)^http_listener 8080 ", f"http_listener {http_port} ", text)
    if (n1, n2) != (1, 1):
        raise ValueError("expected one 'listener 1883 ADDRESS' and one 'http_listener 8080 ADDRESS' line")
    return text


def healthcheck(port):
    return subprocess.run(["bash", HEALTHCHECK, "127.0.0.1", str(port)],
                          capture_output=True, timeout=10).returncode


def mqtt_connack(port):
    result = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deploy-config-check")
    c.on_connect = lambda client, userdata, flags, reason, props: result.setdefault("rc", reason)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while "rc" not in result and time.monotonic() < deadline:
        time.sleep(0.02)
    c.loop_stop()
    c.disconnect()
    return result.get("rc")


def check(name, text):
    print(f"  {name}")
    shards = re.search(r"(?m)^shards (\d+)", text)
    try:
        broker = Apus(lambda p, q: with_ports(text, p, q)).start()
    except (RuntimeError, ValueError) as e:
        fail(f"{name}: {e}")
        return
    try:
        log = broker.log()
        for want in (f"listening on 0.0.0.0:{broker.mqtt_port} ",
                     f"HTTP API and metrics on http://0.0.0.0:{broker.http_port}/"):
            if want not in log:
                fail(f"{name}: no '{want}' in the log:\n{log}")
        if healthcheck(broker.http_port) != 0:
            fail(f"{name}: healthcheck.sh reports a running broker unhealthy")
        status, body = http_get(broker.http_port, "/health")
        if shards and f'"shards":{shards.group(1)},' not in body:
            fail(f"{name}: /health says {body}, the file sets shards {shards.group(1)}")
        rc = mqtt_connack(broker.mqtt_port)
        if rc is None or rc.is_failure:
            fail(f"{name}: CONNACK {rc}")
        print(f"    /health: {status} {body}; CONNACK: {rc}")
    finally:
        code = broker.stop()
    if code != 0:
        fail(f"{name}: exit status {code} after SIGTERM:\n{broker.log()}")
    if healthcheck(broker.http_port) == 0:
        fail(f"{name}: healthcheck.sh reports a stopped broker healthy")


def main():
    with open(os.path.join(REPO, "deploy/docker/apus.conf")) as f:
        check("deploy/docker/apus.conf", f.read())
    check("deploy/kubernetes/apus.yaml ConfigMap apus.conf", configmap_conf())
    if failures:
        print(f"check_configs: {len(failures)} problem(s)")
        return 1
    print("check_configs: both shipped configurations run the broker, healthcheck.sh agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
