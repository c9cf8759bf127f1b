"""TLS listeners with real clients (issue 16): mosquitto_pub/sub with --cafile (and --cert/--key),
paho-mqtt with tls_set, openssl s_client for protocol versions; every certificate is made by the
`openssl` command here (a small CA with `openssl ca`, so that expired and revoked certificates and a
CRL exist). One broker serves a plain, a TLS and a mutual-TLS listener (with a CRL) and the HTTP
listener at once; a second one maps the client certificate's CN to the user name for its ACL."""
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from conftest import APUS_BIN, BROKER, free_port, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus configuration")


def run(*args, cwd=None, check=True, timeout=20, input=None):
    return subprocess.run(args, cwd=cwd, check=check, capture_output=True, text=True, timeout=timeout, input=input)


class CA:
    """A CA directory for `openssl ca`: issues, revokes, and writes the CRL."""

    def __init__(self, root, name="apus-test-ca"):
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "newcerts"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(f"""[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {self.dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = copy
[ policy_any ]
commonName = supplied
organizationName = optional
""")
        self.cert = os.path.join(self.dir, "ca.crt")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", os.path.join(self.dir, "ca.key"), "-out", self.cert, "-days", "30", "-subj", f"/CN={name}")

    def issue(self, name, cn, san=None, start=None, end=None):
        key, csr, crt = (os.path.join(self.dir, f"{name}.{ext}") for ext in ("key", "csr", "crt"))
        req = ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
               "-out", csr, "-subj", f"/O=Apus/CN={cn}"]
        if san:
            req += ["-addext", f"subjectAltName={san}"]
        run(*req)
        sign = ["openssl", "ca", "-batch", "-config", self.conf, "-in", csr, "-out", crt, "-notext"]
        if start:
            sign += ["-startdate", start, "-enddate", end]
        run(*sign)
        return crt, key

    def revoke(self, crt):
        run("openssl", "ca", "-config", self.conf, "-revoke", crt)

    def crl(self):
        path = os.path.join(self.dir, "crl.pem")
        run("openssl", "ca", "-config", self.conf, "-gencrl", "-out", path)
        return path


def serial(cert_file):
    return run("openssl", "x509", "-in", cert_file, "-noout", "-serial").stdout.strip().split("=")[1]


class TLSBroker:
    """apus started on a configuration file; `ports` are its listeners' ports by name."""

    def __init__(self, conf_text, ports, shards=2):
        self.ports = ports
        self.conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        self.conf.write(conf_text)
        self.conf.close()
        self.log = tempfile.NamedTemporaryFile(prefix="broker-tls-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([APUS_BIN, "--config", self.conf.name, "--shards", str(shards), "--log-level", "info"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, f"apus exited at start-up:\n{self.log_text()}"
            try:
                socket.create_connection(("127.0.0.1", ports["plain"]), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < end, "apus did not start listening"
                time.sleep(0.02)

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def alive(self):
        assert self.proc.poll() is None, f"apus died:\n{self.log_text()[-3000:]}"

    def metric(self, name):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.ports['http']}/metrics", timeout=5).read().decode()
        m = re.search(rf"^{name} (\d+)$", text, re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        self.alive()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=10) == 0, self.log_text()[-3000:]


@pytest.fixture(scope="module")
def pki():
    root = tempfile.mkdtemp(prefix="apus-tls-")
    ca = CA(root)
    other = CA(root, "other-ca")
    p = {"root": root, "ca": ca, "other": other}
    p["server"] = ca.issue("server", "localhost", san="DNS:localhost,IP:127.0.0.1")
    p["alice"] = ca.issue("alice", "alice")
    p["bob"] = ca.issue("bob", "bob")
    p["mallory"] = ca.issue("mallory", "mallory")
    p["expired"] = ca.issue("expired", "expired", start="20200101000000Z", end="20200201000000Z")
    p["stranger"] = other.issue("stranger", "stranger")
    ca.revoke(p["mallory"][0])
    p["crl"] = ca.crl()
    # The server's files as the broker reads them (replaced in place by the SIGHUP test).
    p["server_crt"] = os.path.join(root, "server.crt")
    p["server_key"] = os.path.join(root, "server.key")
    for src, dst in ((p["server"][0], p["server_crt"]), (p["server"][1], p["server_key"])):
        with open(src) as a, open(dst, "w") as b:
            b.write(a.read())
    return p


@pytest.fixture(scope="module")
def broker(pki):
    ports = {"plain": free_port(), "tls": free_port(), "mtls": free_port(), "http": free_port()}
    conf = f"""allow_anonymous true
tls_handshake_timeout 1
listener {ports['plain']} 127.0.0.1
listener {ports['tls']} 127.0.0.1
certfile {pki['server_crt']}
keyfile {pki['server_key']}
listener {ports['mtls']} 127.0.0.1
certfile {pki['server_crt']}
keyfile {pki['server_key']}
cafile {pki['ca'].cert}
require_certificate true
crlfile {pki['crl']}
http_listener {ports['http']}
"""
    b = TLSBroker(conf, ports)
    yield b
    b.stop()


def pub(port, topic, message, *tls, qos=1, check=False):
    return run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-m", message, "-q", str(qos), *tls, check=check)


def subscribe_one(port, topic, *tls):
    """A mosquitto_sub waiting for one message (started before the publish)."""
    p = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-C", "1", "-W", "10", "-v", *tls],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    return p


def assert_tls_serves(broker, pki):
    """A good TLS client still gets through (the broker is unharmed by what came before)."""
    topic = unique("tls/ok")
    s = subscribe_one(broker.ports["tls"], topic, "--cafile", pki["ca"].cert)
    assert pub(broker.ports["tls"], topic, "still-here", "--cafile", pki["ca"].cert).returncode == 0
    out, err = s.communicate(timeout=15)
    assert out.strip() == f"{topic} still-here", err
    broker.alive()


def test_tls_and_plain_listeners_in_one_process(broker, pki):
    # mosquitto_sub on TLS, mosquitto_pub on plain and on TLS; paho over TLS too.
    topic = unique("mix")
    s = subscribe_one(broker.ports["tls"], f"{topic}/#", "--cafile", pki["ca"].cert)
    assert pub(broker.ports["plain"], f"{topic}/a", "from-plain").returncode == 0
    out, _ = s.communicate(timeout=15)
    assert out.strip() == f"{topic}/a from-plain"
    s = subscribe_one(broker.ports["plain"], f"{topic}/#")
    r = pub(broker.ports["tls"], f"{topic}/b", "from-tls", "--cafile", pki["ca"].cert)
    assert r.returncode == 0, r.stderr
    out, _ = s.communicate(timeout=15)
    assert out.strip() == f"{topic}/b from-tls"

    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("paho-tls"))
    c.tls_set(ca_certs=pki["ca"].cert)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
    connected = []
    c.on_connect = lambda cl, u, f, rc, p=None: connected.append(rc)
    c.connect("127.0.0.1", broker.ports["tls"])
    c.loop_start()
    try:
        wait_until(lambda: connected, message="paho CONNACK over TLS")
        assert not connected[0].is_failure
        c.subscribe(f"{topic}/paho", qos=1)
        time.sleep(0.3)
        c.publish(f"{topic}/paho", b"x" * 100_000, qos=1).wait_for_publish(5)  # several records each way
        wait_until(lambda: got, message="paho's own message back")
        assert got[0] == (f"{topic}/paho", b"x" * 100_000)
    finally:
        c.loop_stop()
        c.disconnect()
    assert broker.metric("apus_tls_handshakes_total") >= 3


def test_wrong_ca_is_refused(broker, pki):
    failures = broker.metric("apus_tls_handshake_failures_total")
    # The client does not trust the server's CA: it gives up in the handshake.
    r = pub(broker.ports["tls"], "t/wrong-ca", "x", "--cafile", pki["other"].cert)
    assert r.returncode != 0
    # A client certificate from another CA on the mutual-TLS listener: the broker refuses it.
    r = pub(broker.ports["mtls"], "t/wrong-ca", "x", "--cafile", pki["ca"].cert, "--cert", pki["stranger"][0], "--key", pki["stranger"][1])
    assert r.returncode != 0
    wait_until(lambda: broker.metric("apus_tls_handshake_failures_total") >= failures + 1, message="the failure counted")
    assert_tls_serves(broker, pki)


def test_mutual_tls(broker, pki):
    topic = unique("mtls")
    alice = ("--cafile", pki["ca"].cert, "--cert", pki["alice"][0], "--key", pki["alice"][1])
    s = subscribe_one(broker.ports["mtls"], topic, *alice)
    assert pub(broker.ports["mtls"], topic, "with-cert", *alice).returncode == 0
    out, _ = s.communicate(timeout=15)
    assert out.strip() == f"{topic} with-cert"
    failures = broker.metric("apus_tls_handshake_failures_total")
    # No certificate where one is required; an expired one; a revoked one (the CRL names it).
    for extra in ((), ("--cert", pki["expired"][0], "--key", pki["expired"][1]),
                  ("--cert", pki["mallory"][0], "--key", pki["mallory"][1])):
        seen = subscribe_one(broker.ports["plain"], topic)
        r = pub(broker.ports["mtls"], topic, "must-not-arrive", "--cafile", pki["ca"].cert, *extra)
        assert r.returncode != 0, f"{extra}: {r.stdout} {r.stderr}"
        seen.kill()
        out, _ = seen.communicate()
        assert "must-not-arrive" not in out
    wait_until(lambda: broker.metric("apus_tls_handshake_failures_total") >= failures + 3, message="three failures counted")
    log = broker.log_text()
    assert "certificate has expired" in log
    assert "certificate revoked" in log
    assert_tls_serves(broker, pki)


def test_protocol_versions(broker, pki):
    def s_client(*flags):
        return run("openssl", "s_client", "-connect", f"127.0.0.1:{broker.ports['tls']}", "-brief", "-CAfile", pki["ca"].cert,
                   *flags, check=False, input="")
    for version in ("-tls1_2", "-tls1_3"):
        r = s_client(version)
        assert r.returncode == 0, r.stderr
        assert ("TLSv1.2" if version == "-tls1_2" else "TLSv1.3") in r.stderr + r.stdout
    # TLS 1.1 (offered with the security level that still allows it on the client side): refused.
    r = s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert r.returncode != 0
    assert "Protocol version: TLSv1.1" not in r.stderr + r.stdout
    assert_tls_serves(broker, pki)


def test_plain_mqtt_to_the_tls_port_and_tls_to_the_plain_port(broker, pki):
    connect = bytes([0x10, 0x10, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x3C, 0x00, 0x04]) + b"abcd"
    with socket.create_connection(("127.0.0.1", broker.ports["tls"]), timeout=5) as s:
        s.sendall(connect)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert not data.startswith(b"\x20"), "no CONNACK in the clear"
    # TLS to the plain port: the core sees no CONNECT and closes.
    r = run("openssl", "s_client", "-connect", f"127.0.0.1:{broker.ports['plain']}", "-brief", check=False, input="")
    assert r.returncode != 0
    assert_tls_serves(broker, pki)


def test_a_handshake_that_stops_is_closed_at_the_timeout(broker, pki):
    # The first bytes of a ClientHello, then nothing: closed after tls_handshake_timeout (1 s).
    with socket.create_connection(("127.0.0.1", broker.ports["tls"]), timeout=10) as s:
        s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]))
        started = time.monotonic()
        while s.recv(4096):
            pass
        took = time.monotonic() - started
    assert 0.7 <= took <= 5, took
    assert "handshake timed out" in broker.log_text()
    assert_tls_serves(broker, pki)


def test_sighup_to_a_new_certificate_while_a_client_publishes(broker, pki):
    topic = unique("hup")
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("hup-sub"))
    sub.on_message = lambda cl, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", broker.ports["plain"])
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("hup-pub"))
    client.tls_set(ca_certs=pki["ca"].cert)
    disconnects = []
    client.on_disconnect = lambda *a: disconnects.append(a)
    client.connect("127.0.0.1", broker.ports["tls"])
    client.loop_start()
    try:
        time.sleep(0.5)
        old = serial(pki["server_crt"])
        crt, key = pki["ca"].issue("server-renewed", "localhost", san="DNS:localhost,IP:127.0.0.1")
        new = serial(crt)
        assert new != old
        for src, dst in ((crt, pki["server_crt"]), (key, pki["server_key"])):
            with open(src) as a, open(dst + ".tmp", "w") as b:
                b.write(a.read())
            os.replace(dst + ".tmp", dst)
        for i in range(10):
            client.publish(topic, f"before-{i}", qos=1).wait_for_publish(5)
        broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "TLS certificates reloaded" in broker.log_text(), message="the reload logged")
        time.sleep(0.3)  # the shards take the new contexts at their next tick (100 ms)
        for i in range(10):
            client.publish(topic, f"after-{i}", qos=1).wait_for_publish(5)
        wait_until(lambda: len(got) >= 20, message="every message through the reload")
        assert not disconnects, "the TLS client stayed connected"
        # A new connection gets the new certificate.
        r = run("openssl", "s_client", "-connect", f"127.0.0.1:{broker.ports['tls']}", "-CAfile", pki["ca"].cert, "-showcerts",
                check=False, input="")
        served = run("openssl", "x509", "-noout", "-serial", input=r.stdout).stdout.strip().split("=")[1]
        assert served == new
        # A broken file: the old context stays, and the reason is logged.
        with open(pki["server_key"], "w") as f:
            f.write("not a key\n")
        broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "TLS reload failed" in broker.log_text(), message="the failed reload logged")
        assert_tls_serves(broker, pki)
    finally:
        client.loop_stop()
        client.disconnect()
        sub.loop_stop()
        sub.disconnect()
        for src, dst in ((pki["server"][0], pki["server_crt"]), (pki["server"][1], pki["server_key"])):
            with open(src) as a, open(dst, "w") as b:
                b.write(a.read())


def test_identity_as_user_name_with_an_acl(pki):
    ports = {"plain": free_port(), "mtls": free_port()}
    acl = os.path.join(pki["root"], "acl")
    with open(acl, "w") as f:
        f.write("user alice\ntopic readwrite alice/#\n\nuser bob\ntopic read alice/#\n")
    conf = f"""allow_anonymous false
acl_file {acl}
listener {ports['plain']} 127.0.0.1
listener {ports['mtls']} 127.0.0.1
certfile {pki['server_crt']}
keyfile {pki['server_key']}
cafile {pki['ca'].cert}
require_certificate true
use_identity_as_username true
"""
    b = TLSBroker(conf, ports)
    try:
        alice = ("--cafile", pki["ca"].cert, "--cert", pki["alice"][0], "--key", pki["alice"][1])
        bob = ("--cafile", pki["ca"].cert, "--cert", pki["bob"][0], "--key", pki["bob"][1])
        topic = f"alice/{unique('x')}"
        s = subscribe_one(ports["mtls"], "alice/#", *bob)  # bob may read alice/#
        # The user name in CONNECT is ignored: the certificate says alice.
        assert pub(ports["mtls"], topic, "from-alice", *alice, "-u", "somebody-else", "-P", "wrong").returncode == 0
        out, err = s.communicate(timeout=15)
        assert out.strip() == f"{topic} from-alice", err
        # bob may not write there (QoS 0: silently dropped, as mosquitto does), alice may.
        s = subscribe_one(ports["mtls"], "alice/#", *alice)
        pub(ports["mtls"], f"alice/{unique('y')}", "from-bob", *bob, qos=0)
        pub(ports["mtls"], topic, "alice-again", *alice, qos=0)
        out, _ = s.communicate(timeout=15)
        assert out.strip() == f"{topic} alice-again"
        # Without a certificate nobody gets in on the plain listener (anonymous is off).
        assert pub(ports["plain"], topic, "anon").returncode != 0
    finally:
        b.stop()
