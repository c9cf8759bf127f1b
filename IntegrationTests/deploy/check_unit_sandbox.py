#!/usr/bin/env python3
"""Runs the real apus inside the parts of deploy/systemd/apus.service's sandbox that decide
whether io_uring works, since this machine has no systemd as PID 1 to start the unit itself:

  SystemCallFilter= + SystemCallErrorNumber=EPERM   an allow-list of exactly the system calls
                                                    systemd-analyze expands the filter to here
  MemoryDenyWriteExecute=yes                        mmap() writable+executable, mprotect() and
                                                    pkey_mprotect() to executable refused
  RestrictAddressFamilies=                          socket() of other families refused
  User=/Group=, NoNewPrivileges=yes,                setpriv: uid/gid 10001, no_new_privs, empty
  CapabilityBoundingSet= AmbientCapabilities=       bounding, inheritable and ambient sets

The filter is loaded as seccomp (IntegrationTests/deploy/seccomp_exec.py), as systemd loads it before it
executes ExecStart=. Then: /health, a QoS 1 round trip, SIGHUP (ExecReload=) and SIGTERM, with
this script on the other end of $NOTIFY_SOCKET as systemd would be (Type=notify, WatchdogSec=):
READY=1 first, WATCHDOG=1 pings, STOPPING=1 at SIGTERM, all sent from inside the sandbox.
The file-system and namespace options (ProtectSystem=, PrivateTmp=, ...) are not reproduced.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apus_proc import REPO, Apus, http_get, scratch_dir  # noqa: E402
from check_seccomp import round_trip  # noqa: E402

UNIT = os.path.join(REPO, "deploy/systemd/apus.service")
LAUNCHER = os.path.join(REPO, "IntegrationTests/deploy/seccomp_exec.py")
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}
PROT_WRITE, PROT_EXEC = 0x2, 0x4
failures = []


def fail(message):
    failures.append(message)
    print("  FAIL " + message)


# WATCHDOG_USEC for the run: the unit's WatchdogSec=10 would mean a ping every 5 s; the sandbox,
# not the period, is what is checked here (IntegrationTests/blackbox/test_17_deployment.py checks the rest).
WATCHDOG_USEC = 1_000_000


class NotifySocket:
    """systemd's end of the notify protocol: an AF_UNIX datagram socket that apus, as the unit's
    user, may send to."""

    def __init__(self):
        self.path = os.path.join(scratch_dir("apus-notify-"), "notify")
        os.chmod(os.path.dirname(self.path), 0o755)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # sendto() needs write permission on the socket file
        self.messages = []

    def receive(self, timeout):
        """Every message that arrives within timeout seconds (kept in self.messages too)."""
        got = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        self.messages += got
        return got

    def close(self):
        self.sock.close()


def unit_settings():
    settings = {}
    with open(UNIT) as f:
        for line in f:
            m = re.match(r"^(\w+)=(.*)$", line.strip())
            if m:
                settings.setdefault(m.group(1), []).append(m.group(2))
    return settings


def expand(items, seen=None):
    """System calls a SystemCallFilter= list allows, groups expanded by systemd-analyze."""
    seen = set() if seen is None else seen
    calls = set()
    for item in items:
        if not item.startswith("@"):
            calls.add(item)
            continue
        if item in seen:
            continue
        seen.add(item)
        out = subprocess.run(["systemd-analyze", "syscall-filter", item],
                             capture_output=True, text=True, check=True).stdout
        body = [l.split("#")[0].strip() for l in out.splitlines()[1:]]
        calls |= expand([b for b in body if b], seen)
    return calls


def profile(settings):
    filt = settings["SystemCallFilter"][0].split()
    if filt[0].startswith("~"):
        raise SystemExit("a deny-list SystemCallFilter= is not reproduced here")
    allowed = expand(filt)
    guarded = {"mmap", "mprotect", "pkey_mprotect", "socket"}
    rules = [{"names": sorted(allowed - guarded), "action": "SCMP_ACT_ALLOW"}]

    def allow(name, index, mask, value):
        rules.append({"names": [name], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}]})

    mdwe = settings.get("MemoryDenyWriteExecute") == ["yes"]
    if "mmap" in allowed:
        if mdwe:  # not both writable and executable
            allow("mmap", 2, PROT_WRITE, 0)
            allow("mmap", 2, PROT_EXEC, 0)
        else:
            rules.append({"names": ["mmap"], "action": "SCMP_ACT_ALLOW"})
    for name in ("mprotect", "pkey_mprotect"):
        if name in allowed:
            if mdwe:  # never made executable
                allow(name, 2, PROT_EXEC, 0)
            else:
                rules.append({"names": [name], "action": "SCMP_ACT_ALLOW"})
    if "socket" in allowed:
        families = settings.get("RestrictAddressFamilies", [""])[0].split()
        for fam in families:
            rules.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": FAMILIES[fam], "op": "SCMP_CMP_EQ"}]})
    errno = {"EPERM": 1}[settings.get("SystemCallErrorNumber", ["EPERM"])[0]]
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno, "syscalls": rules}, len(allowed)


def main():
    settings = unit_settings()
    for key, want in (("NoNewPrivileges", ["yes"]), ("CapabilityBoundingSet", [""]),
                      ("AmbientCapabilities", [""]), ("MemoryDenyWriteExecute", ["yes"])):
        if settings.get(key) != want:
            fail(f"{key}= is {settings.get(key)}, this check reproduces {want}")
    prof, count = profile(settings)
    path = os.path.join(scratch_dir("apus-unit-"), "unit-seccomp.json")
    with open(path, "w") as f:
        json.dump(prof, f)
    os.chmod(os.path.dirname(path), 0o755)
    os.chmod(path, 0o644)
    print(f"  SystemCallFilter={settings['SystemCallFilter'][0]}: {count} system calls allowed, "
          f"MemoryDenyWriteExecute, RestrictAddressFamilies={settings['RestrictAddressFamilies'][0]}")

    privs = ["setpriv", "--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]
    if os.geteuid() == 0:
        privs[1:1] = ["--reuid=10001", "--regid=10001", "--clear-groups"]
    wrapper = [*privs, "/usr/bin/python3", LAUNCHER, path]

    # The sandbox is real: a socket family the unit does not list is refused in it.
    probe = subprocess.run([*wrapper, "/usr/bin/python3", "-c",
                            "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)"],
                           capture_output=True, text=True)
    last = (probe.stderr.strip().splitlines() or [""])[-1]
    print(f"  AF_NETLINK socket in the sandbox: exit {probe.returncode}: {last}")
    if probe.returncode == 0:
        fail("an AF_NETLINK socket was created in the sandbox: the filter is not applied")

    for key, want in (("Type", ["notify"]), ("NotifyAccess", ["main"])):
        if settings.get(key) != want:
            fail(f"{key}= is {settings.get(key)}, the unit is to be {want}")
    if not settings.get("WatchdogSec"):
        fail("the unit sets no WatchdogSec=")

    notify = NotifySocket()
    broker = Apus(lambda m, h: f"listener {m} 127.0.0.1\nhttp_listener {h}\n", wrapper=wrapper,
                  env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        broker.start()
        first = notify.receive(0.5)
        ready = next((m for m in first if m.startswith("READY=1")), None)
        print(f"  notify: {ready!r}")
        if not first or not first[0].startswith("READY=1"):
            fail(f"the first notification is not READY=1: {first}")
        elif f"MAINPID={broker.proc.pid}" not in first[0]:
            fail(f"READY=1 names another MAINPID than {broker.proc.pid} (setpriv and the launcher exec): {first[0]!r}")
        pings = notify.receive(2.2 * WATCHDOG_USEC / 1e6)
        print(f"  notify: {len(pings)} x WATCHDOG=1 in {2.2 * WATCHDOG_USEC / 1e6:.1f} s "
              f"(WATCHDOG_USEC={WATCHDOG_USEC})")
        if len(pings) < 3 or any(p != "WATCHDOG=1" for p in pings):
            fail(f"watchdog pings every {WATCHDOG_USEC / 2e6} s expected in the sandbox, got {pings}")
        status, body = http_get(broker.http_port, "/health")
        n = round_trip(broker.mqtt_port)
        print(f"  apus in the sandbox: /health {status} {body}; {n} of 10 QoS 1 messages delivered")
        if n != 10:
            fail(f"{n} of 10 messages delivered in the sandbox")
        broker.proc.send_signal(signal.SIGHUP)  # ExecReload=
        deadline = time.monotonic() + 3
        while "SIGHUP" not in broker.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        if "password_file and acl_file reloaded" not in broker.log():
            fail("no reload logged after SIGHUP:\n" + broker.log())
    except RuntimeError as e:
        fail(f"apus did not start in the sandbox: {e}")
    finally:
        code = broker.stop()
    print(f"  exit status after SIGTERM: {code}")
    if code != 0:
        fail(f"exit status {code} after SIGTERM in the sandbox:\n{broker.log()}")
    last = [m for m in notify.messages + notify.receive(0.2) if m != "WATCHDOG=1"]
    print(f"  notify: last message {last[-1] if last else None!r}")
    if not last or last[-1] != "STOPPING=1":
        fail(f"no STOPPING=1 after SIGTERM: {notify.messages}")
    notify.close()
    if failures:
        print(f"check_unit_sandbox: {len(failures)} problem(s)")
        return 1
    print("check_unit_sandbox: apus runs under the unit's system call filter and privileges and speaks the notify protocol")
    return 0


if __name__ == "__main__":
    sys.exit(main())
