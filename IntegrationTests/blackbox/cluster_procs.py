"""A real etcd and real apus nodes for the cluster tests and the cluster measurements
(reports/cluster-*/measure.py): processes on loopback, free ports, temporary directories."""
import base64
import json
import os
import signal
import subprocess
import tempfile
import urllib.request

from conftest import APUS_BIN, free_port, wait_until

LEASE_TTL = 3


class Etcd:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-cluster", f"t=http://127.0.0.1:{self.peer_port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.healthy, timeout=20, message="etcd to serve")

    def healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()

    def members(self, cluster):
        """The member records under the cluster's prefix, as etcd holds them."""
        prefix = f"/apus/{cluster}/members/".encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        body = json.dumps({"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()}).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + "/v3/kv/range", data=body), timeout=2) as r:
            kvs = json.loads(r.read()).get("kvs", [])
        return sorted(json.loads(base64.b64decode(kv["value"]))["name"] for kv in kvs)


class Node:
    def __init__(self, name, etcd, cluster, shards=2, extra=(), lease_ttl=LEASE_TTL, uid=None):
        self.name = name
        self.etcd = etcd
        self.cluster = cluster
        self.host = "127.0.0.1"
        self.port = free_port()
        self.http = free_port()
        self.link = free_port()
        self.shards = shards
        # Run as another user (the partition test tells this node's packets apart by their owner).
        self.uid = uid
        self.lease_ttl = lease_ttl
        self.extra = list(extra)
        self.log = tempfile.NamedTemporaryFile(prefix=f"node-{name}-", suffix=".log", delete=False)
        self.start()

    def start(self):
        prefix = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"] if self.uid is not None else []
        self.proc = subprocess.Popen(
            [*prefix, APUS_BIN, "--port", str(self.port), "--shards", str(self.shards), "--log-level", "info",
             "--cluster-name", self.cluster, "--node-name", self.name,
             "--cluster-listener", f"127.0.0.1:{self.link}", "--etcd-endpoints", self.etcd.url,
             "--set", f"cluster_lease_ttl={self.lease_ttl}", "--set", f"http_listener={self.http}", *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.ready, timeout=15, message=f"node {self.name} to serve")

    def ready(self):
        assert self.proc.poll() is None, f"node {self.name} exited:\n{self.log_tail()}"
        try:
            return self.get("/health/ready")["status"] == "ready"
        except OSError:
            return False

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as r:
            body = r.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def nodes(self):
        return {n["node"]: n for n in self.get("/api/v5/nodes")}

    def metric(self, name):
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def log_tail(self, lines=40):
        with open(self.log.name, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            code = self.proc.wait(timeout=10)
            assert code == 0, f"node {self.name} exited with {code}:\n{self.log_tail()}"


