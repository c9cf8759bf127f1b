"""Start and stop the real apus binary for the deployment checks (IntegrationTests/deploy/run.sh).

apus takes no port 0 for its HTTP listener, so a pair of free ports below 32768 (under the
usual ephemeral range) is picked and, if the broker still fails to bind them, another pair.
"""

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_scratch = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _scratch])


def scratch_dir(prefix):
    """A temporary directory removed when the check exits (it keeps the logs until then)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _scratch.append(d)
    return d


def apus_bin():
    path = os.environ.get("APUS_BIN", os.path.join(REPO, ".build/release/apus"))
    if not os.access(path, os.X_OK):
        raise SystemExit(f"apus binary not found or not executable: {path} (set APUS_BIN)")
    return path


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_pair(rng=random.Random()):
    while True:
        mqtt = rng.randrange(18000, 31000)
        http = mqtt + 1000
        if _port_free(mqtt) and _port_free(http):
            return mqtt, http


def http_get(port, path, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


def http_status(port, path, timeout=2.0):
    """(status, body) for any answer, 503 included; (None, reason) when none comes."""
    try:
        return http_get(port, path, timeout)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


class Apus:
    """apus with the configuration text that make_config(mqtt_port, http_port) returns; wrapper
    is a command prefix that ends by exec'ing it (setpriv, seccomp_exec.py), so that the
    process signalled is apus itself. env: variables added to the environment (APUS_<KEY>
    settings, NOTIFY_SOCKET, fault injection)."""

    def __init__(self, make_config, wrapper=(), env=None):
        self.make_config = make_config
        self.wrapper = list(wrapper)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.dir = scratch_dir("apus-deploy-")
        os.chmod(self.dir, 0o755)  # readable by the unprivileged user a wrapper switches to
        self.log_path = os.path.join(self.dir, "apus.log")

    def start(self, attempts=5):
        for _ in range(attempts):
            self.mqtt_port, self.http_port = free_port_pair()
            conf = os.path.join(self.dir, "apus.conf")
            with open(conf, "w") as f:
                f.write(self.make_config(self.mqtt_port, self.http_port))
            log = open(self.log_path, "w")
            os.chmod(conf, 0o644)
            self.proc = subprocess.Popen([*self.wrapper, apus_bin(), "--config", conf],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if http_get(self.http_port, "/health")[0] == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
            if "Address already in use" not in self.log():
                raise RuntimeError("apus did not start:\n" + self.log())
        raise RuntimeError("apus found no free ports:\n" + self.log())

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        """SIGTERM, as systemd, Docker and the kubelet stop it; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
