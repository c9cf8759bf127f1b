#!/usr/bin/env python3
"""Starts the real apus with each shipped configuration (the image's deploy/docker/apus.conf, and
the apus.conf of the ConfigMap in deploy/kubernetes/apus.yaml with the StatefulSet's env:
APUS_<KEY> variables, resourceFieldRef resolved as the kubelet would), its two ports moved to
free ones, and checks what the orchestrators rely on: both listeners bound on 0.0.0.0, the shard
count as configured, /health/ready 200 (readinessProbe), the image's HEALTHCHECK script
(deploy/docker/healthcheck.sh) healthy while it runs and unhealthy once it has stopped, MQTT
answering, and a clean exit 0 on SIGTERM. Then, with fault injection (APUS_FAULT_STALL_SHARD),
that a stalled shard makes /health (livenessProbe, HEALTHCHECK) fail: 503 for shard 1, no answer
for shard 0, which serves HTTP.
"""

import math
import os
import re
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apus_proc import REPO, Apus, http_get, http_status  # noqa: E402

HEALTHCHECK = os.path.join(REPO, "deploy/docker/healthcheck.sh")
failures = []


def fail(message):
    failures.append(message)
    print("  FAIL " + message)


def manifest(kind):
    with open(os.path.join(REPO, "deploy/kubernetes/apus.yaml")) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc.get("kind") == kind:
                return doc
    raise SystemExit(f"no {kind} in deploy/kubernetes/apus.yaml")


def configmap_conf():
    return manifest("ConfigMap")["data"]["apus.conf"]


def cpu_quantity(text):
    """A Kubernetes CPU quantity ("2", "1.5", "500m") in CPUs."""
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def statefulset_env():
    """The apus container's env: as the kubelet sets it (value, or resourceFieldRef of the CPU
    limit or request: the quantity over the divisor, rounded up, as the downward API does)."""
    container = next(c for c in manifest("StatefulSet")["spec"]["template"]["spec"]["containers"]
                     if c["name"] == "apus")
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var.get("valueFrom", {}).get("resourceFieldRef")
        if not ref or ref["resource"] not in ("limits.cpu", "requests.cpu"):
            raise SystemExit(f"env {var['name']}: only value and resourceFieldRef of CPU are resolved here")
        kind, _ = ref["resource"].split(".")
        quantity = cpu_quantity(container["resources"][kind]["cpu"])
        env[var["name"]] = str(math.ceil(quantity / cpu_quantity(ref.get("divisor", "1"))))
    return env


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


def timed_healthcheck(port):
    start = time.monotonic()
    code = healthcheck(port)
    return code, time.monotonic() - start


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


def check(name, text, env=None):
    print(f"  {name}" + (f" with env {env}" if env else ""))
    shards = (env or {}).get("APUS_SHARDS")  # the environment wins over the file
    if shards is None:
        m = re.search(r"(?m)^shards (\d+)", text)
        shards = m.group(1) if m else None
    try:
        broker = Apus(lambda p, q: with_ports(text, p, q), env=env).start()
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
        if shards and f'"shards":{shards},' not in body:
            fail(f"{name}: /health says {body}, the configuration sets shards {shards}")
        ready = http_status(broker.http_port, "/health/ready")
        if ready != (200, '{"status":"ready"}'):
            fail(f"{name}: /health/ready (readinessProbe) answers {ready}")
        rc = mqtt_connack(broker.mqtt_port)
        if rc is None or rc.is_failure:
            fail(f"{name}: CONNACK {rc}")
        print(f"    /health: {status} {body}; /health/ready: {ready[0]} {ready[1]}; CONNACK: {rc}")
    finally:
        code = broker.stop()
    if code != 0:
        fail(f"{name}: exit status {code} after SIGTERM:\n{broker.log()}")
    if healthcheck(broker.http_port) == 0:
        fail(f"{name}: healthcheck.sh reports a stopped broker healthy")


def check_stall(text, env, shard):
    """Shard `shard` stops ticking 1 s after start (fault injection): /health, the livenessProbe
    and the HEALTHCHECK must fail within their timeouts (2 s for the probe, 3 s for Docker's)."""
    env = dict(env, APUS_FAULT_STALL_SHARD=str(shard), APUS_FAULT_STALL_AFTER="1")
    print(f"  stalled shard {shard} (APUS_FAULT_STALL_SHARD={shard} APUS_FAULT_STALL_AFTER=1)")
    try:
        broker = Apus(lambda p, q: with_ports(text, p, q), env=env).start()
    except (RuntimeError, ValueError) as e:
        fail(f"stalled shard {shard}: {e}")
        return
    try:
        deadline = time.monotonic() + 6
        while True:
            status, body = http_status(broker.http_port, "/health", timeout=2)
            if status != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        print(f"    /health: {status} {body}")
        if shard == 0:  # shard 0 serves HTTP: nothing answers, the probe times out
            if status is not None:
                fail(f"stalled shard 0: /health answered {status} {body}")
        elif (status != 503 or '"status":"stalled"' not in body
              or not re.search(rf'\{{"shard":{shard},"last_tick_ms":\d+,"stalled":true\}}', body)):
            fail(f"stalled shard {shard}: /health answered {status} {body}, not 503 with shard {shard} stalled")
        code, took = timed_healthcheck(broker.http_port)
        print(f"    healthcheck.sh: exit {code} after {took:.1f} s")
        if code == 0:
            fail(f"stalled shard {shard}: healthcheck.sh reports the broker healthy")
        if took >= 3:
            fail(f"stalled shard {shard}: healthcheck.sh took {took:.1f} s, beyond the HEALTHCHECK's --timeout=3s")
        if "stops ticking" not in broker.log():
            fail(f"stalled shard {shard}: no fault injection in the log:\n{broker.log()}")
    finally:
        code = broker.stop()
    if code != 0:
        fail(f"stalled shard {shard}: exit status {code} after SIGTERM:\n{broker.log()}")


def main():
    with open(os.path.join(REPO, "deploy/docker/apus.conf")) as f:
        check("deploy/docker/apus.conf", f.read())
    env = statefulset_env()
    check("deploy/kubernetes/apus.yaml ConfigMap apus.conf", configmap_conf(), env)
    if int(env.get("APUS_SHARDS", "0")) < 2:
        fail(f"the StatefulSet's env {env} gives fewer than 2 shards: the stall checks need 2")
    else:
        for shard in (1, 0):
            check_stall(configmap_conf(), env, shard)
    if failures:
        print(f"check_configs: {len(failures)} problem(s)")
        return 1
    print("check_configs: both shipped configurations run the broker, /health/ready and "
          "healthcheck.sh agree, a stalled shard fails /health and healthcheck.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
