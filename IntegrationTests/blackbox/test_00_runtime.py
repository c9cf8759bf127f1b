"""00-runtime: the process shape issue 2 promises, read from /proc of a real `apus --shards 2`:
two io_uring rings, two shard threads each pinned to its own CPU, and jemalloc mapped."""
import os
import signal
import socket
import subprocess
import time

import pytest

APUS_BIN = os.environ.get("APUS_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "release", "apus"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_started(proc, deadline=15.0):
    """Reads apus's log until it says it is listening: every shard thread is then running with its
    ring (the port alone accepts into the backlog as soon as the sockets exist, before the threads)."""
    import select
    end = time.monotonic() + deadline
    seen = b""
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"apus exited early with {proc.returncode}: {seen.decode(errors='replace')}")
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            seen += os.read(proc.stderr.fileno(), 65536)
            if b"apus listening on" in seen:
                return
    raise AssertionError(f"apus did not report listening: {seen.decode(errors='replace')}")


def wait_for_port(port, proc, deadline=15.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"apus exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("apus did not start listening")


def shard_affinities(pid):
    """Each shard thread's name → the CPUs it may run on."""
    shards = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        if name.startswith("apus-shard-"):
            shards[name] = os.sched_getaffinity(int(tid))
    return shards


@pytest.fixture
def apus2():
    if os.environ.get("BROKER", "apus") != "apus":
        pytest.skip("apus-only")
    port = free_port()
    proc = subprocess.Popen([APUS_BIN, "--port", str(port), "--shards", "2", "--set", "cpu_affinity=true"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        wait_until_started(proc)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("apus did not stop within 5 s of SIGTERM")
        assert code == 0, proc.stderr.read().decode(errors="replace")


def test_two_io_uring_rings(apus2):
    proc, _ = apus2
    fd_dir = f"/proc/{proc.pid}/fd"
    targets = []
    for fd in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    assert sum(1 for t in targets if t == "anon_inode:[io_uring]") == 2, targets


def test_two_shard_threads_pinned_to_distinct_cpus(apus2):
    proc, _ = apus2
    if os.cpu_count() < 2:
        pytest.skip("needs 2 CPUs")
    pinned = shard_affinities(proc.pid)
    assert sorted(pinned) == ["apus-shard-0", "apus-shard-1"], pinned
    assert all(len(cpus) == 1 for cpus in pinned.values()), pinned
    assert pinned["apus-shard-0"] != pinned["apus-shard-1"], pinned


def test_shards_pin_within_the_cpu_set_they_are_given():
    """A CPU set given from outside (taskset here; docker --cpuset-cpus, a Kubernetes CPU manager)
    is where the shards pin themselves (cpu_affinity auto pins when the process was given fewer
    CPUs than the machine has): started on the last CPU only, the one shard runs there, not on
    CPU 0 (which pinning to CPUs 0..n-1 did, outside the set it was given)."""
    if os.environ.get("BROKER", "apus") != "apus":
        pytest.skip("apus-only")
    if os.cpu_count() < 2:
        pytest.skip("needs 2 CPUs")
    last = max(os.sched_getaffinity(0))
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", str(last), APUS_BIN, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        wait_until_started(proc)
        pinned = shard_affinities(proc.pid)
        assert pinned == {"apus-shard-0": {last}}, pinned  # one CPU given: one shard, on it
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.mark.parametrize("setting", ["cpu_affinity=false", "cpu_affinity=auto"])
def test_unpinned_shards_when_asked_or_when_the_cpus_are_shared(setting):
    """cpu_affinity false, and auto (the default) when the process may use every online CPU (it
    shares them with whatever else runs): the shard threads may run on every CPU."""
    if os.environ.get("BROKER", "apus") != "apus":
        pytest.skip("apus-only")
    if setting.endswith("auto") and len(os.sched_getaffinity(0)) < os.sysconf("SC_NPROCESSORS_ONLN"):
        pytest.skip("this test runs on a CPU subset: auto pins there")
    port = free_port()
    proc = subprocess.Popen([APUS_BIN, "--port", str(port), "--shards", "2", "--set", setting],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        wait_until_started(proc)
        allowed = os.sched_getaffinity(0)
        shards = shard_affinities(proc.pid)
        assert shards == {"apus-shard-0": allowed, "apus-shard-1": allowed}, shards
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_jemalloc_is_mapped(apus2):
    proc, _ = apus2
    with open(f"/proc/{proc.pid}/maps") as f:
        maps = f.read()
    assert "libjemalloc" in maps


def test_sigint_exits_cleanly():
    if os.environ.get("BROKER", "apus") != "apus":
        pytest.skip("apus-only")
    port = free_port()
    proc = subprocess.Popen([APUS_BIN, "--port", str(port), "--shards", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0


@pytest.mark.parametrize("skip,expected", [("0", b"DEFER_TASKRUN"), ("1", b"COOP_TASKRUN"), ("3", b"ring=CQSIZE")])
def test_ring_setup_skip_for_measurements(skip, expected):
    """APUS_RING_SETUP_SKIP (docs/configuration.md, measurement only) picks a lesser io_uring
    set-up; the shards' log says which, and the broker still routes (mosquitto_pub → mosquitto_sub)."""
    if os.environ.get("BROKER", "apus") != "apus":
        pytest.skip("apus-only")
    port = free_port()
    env = dict(os.environ, APUS_RING_SETUP_SKIP=skip)
    proc = subprocess.Popen([APUS_BIN, "--port", str(port), "--shards", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        import select
        seen, end = b"", time.monotonic() + 15
        while b"apus listening on" not in seen and time.monotonic() < end:
            if select.select([proc.stderr], [], [], 0.1)[0]:
                seen += os.read(proc.stderr.fileno(), 65536)
        assert seen.count(b"ready") == 2 and seen.count(expected) == 2, seen.decode(errors="replace")
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "ring/t", "-C", "1", "-W", "10"],
                               stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while sub.poll() is None and time.monotonic() < deadline:
            # mosquitto_sub gives no sign once subscribed: publish until its one message arrives.
            subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "ring/t", "-m", "hello"], check=True)
            try:
                sub.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        assert sub.wait(timeout=10) == 0
        assert sub.stdout.read().strip() == "hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_second_broker_on_the_same_port_is_refused(apus2):
    """The shards listen with SO_REUSEPORT, which would let a second broker of the same user bind
    the same address and take half of the new connections (a publisher on one and its subscriber on
    the other then miss each other's messages, silently). The second one must fail to start, as
    Mosquitto does, and the first keep all the connections."""
    first, port = apus2
    second = subprocess.Popen([APUS_BIN, "--port", str(port), "--shards", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        code = second.wait(timeout=10)
    except subprocess.TimeoutExpired:
        second.kill()
        raise AssertionError("a second apus on a port in use kept running")
    assert code != 0
    assert b"in use" in second.stderr.read()
    assert first.poll() is None
    # Every new connection still reaches the first broker: it holds one more socket for each.
    import paho.mqtt.client as mqtt

    def sockets():
        fd_dir = f"/proc/{first.pid}/fd"
        return sum(1 for fd in os.listdir(fd_dir) if os.readlink(os.path.join(fd_dir, fd)).startswith("socket:"))

    before = sockets()
    clients = []
    for i in range(20):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"reuse-{i}")
        c.connect("127.0.0.1", port)
        clients.append(c)
    deadline = time.monotonic() + 5
    while sockets() < before + 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sockets() == before + 20
    for c in clients:
        c.disconnect()
