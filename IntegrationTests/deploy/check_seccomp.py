#!/usr/bin/env python3
"""Checks deploy/seccomp/apus.json against the real apus, loaded as runc loads a profile
(IntegrationTests/deploy/seccomp_exec.py, libseccomp) and as the image runs it (uid and gid 10001):
  - apus starts under it, carries MQTT traffic, serves /health, and exits 0 on SIGTERM;
  - the profile does filter: `unshare --user` fails under it;
  - the same profile with io_uring_setup/enter/register denied, as the runtimes' default
    profiles have them, stops apus at start-up (why RuntimeDefault cannot be used).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apus_proc import REPO, Apus, http_get  # noqa: E402

PROFILE = os.path.join(REPO, "deploy/seccomp/apus.json")
LAUNCHER = os.path.join(REPO, "IntegrationTests/deploy/seccomp_exec.py")
# The image's USER; setpriv (util-linux) switches to it before the profile is loaded (as root;
# anyone else is unprivileged already and runs it as themselves).
AS_IMAGE_USER = ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups"] if os.geteuid() == 0 else []
failures = []


def fail(message):
    failures.append(message)
    print("  FAIL " + message)


def under(profile):
    return [*AS_IMAGE_USER, "/usr/bin/python3", LAUNCHER, profile]


def config(mqtt_port, http_port):
    """Loopback only: these brokers carry the checks' traffic and nothing else."""
    return f"listener {mqtt_port} 127.0.0.1\nhttp_listener {http_port}\n"


def round_trip(port, count=10):
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="seccomp-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", port)
    sub.subscribe("seccomp/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="seccomp-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.3)
    for i in range(count):
        pub.publish("seccomp/t", str(i), qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while len(got) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return len(got)


def main():
    with open(PROFILE) as f:
        profile = json.load(f)
    denied = {n for rule in profile["syscalls"] if "args" not in rule for n in rule["names"]}
    for call in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        if call in denied or profile["defaultAction"] != "SCMP_ACT_ALLOW":
            fail(f"{PROFILE} does not allow {call}")

    broker = Apus(config, wrapper=under(PROFILE))
    try:
        broker.start()
        print("  " + broker.log().strip().splitlines()[0])
        status, body = http_get(broker.http_port, "/health")
        n = round_trip(broker.mqtt_port)
        print(f"  under the profile as uid {10001 if AS_IMAGE_USER else os.geteuid()}: /health {status} {body}; {n} of 10 QoS 1 messages delivered")
        if n != 10:
            fail(f"{n} of 10 messages delivered under the profile")
    except RuntimeError as e:
        fail(f"apus did not start under {PROFILE}: {e}")
    finally:
        code = broker.stop()
    if code != 0:
        fail(f"exit status {code} after SIGTERM under the profile:\n{broker.log()}")

    probe = subprocess.run([*under(PROFILE), "unshare", "--user", "true"], capture_output=True, text=True)
    print(f"  unshare --user under the profile: exit {probe.returncode}: {probe.stderr.strip().splitlines()[-1]}")
    if probe.returncode == 0:
        fail("unshare --user succeeds under the profile: it filters nothing")

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        blocked = dict(profile, syscalls=profile["syscalls"] + [{
            "names": ["io_uring_setup", "io_uring_enter", "io_uring_register"],
            "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
        json.dump(blocked, f)
    os.chmod(f.name, 0o644)
    refused = Apus(config, wrapper=under(f.name))
    try:
        refused.start()
        started = True
    except RuntimeError:
        started = False
    code = refused.stop()
    os.unlink(f.name)
    log = refused.log()
    lines = [l for l in log.splitlines() if "io_uring" in l or l.startswith("Error")]
    print("  with io_uring denied: %s\n    %s" % ("started" if started else "did not start",
                                                 "\n    ".join(lines)))
    if started or code == 0 or "io_uring_queue_init_params: Operation not permitted" not in log:
        fail("apus did not fail with EPERM when io_uring_setup is denied")

    if failures:
        print(f"check_seccomp: {len(failures)} problem(s)")
        return 1
    print("check_seccomp: apus runs under deploy/seccomp/apus.json, not without io_uring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
