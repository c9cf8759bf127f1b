"""A minimal MQTT 5 codec over raw sockets, for what paho cannot do (AUTH, withheld
acknowledgements, exact property checks)."""
import socket

from conftest import TIMEOUT


def varint(n):
    out = b""
    while True:
        byte, n = n % 128, n // 128
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def auth_props(method, data):
    props = b"\x15" + string(method)
    if data is not None:
        props += b"\x16" + string(data)
    return varint(len(props)) + props


def connect_v5(client_id, method, data, username=None):
    flags = 0x02 | (0x80 if username else 0)
    body = string("MQTT") + bytes([5, flags]) + (60).to_bytes(2, "big") + auth_props(method, data) + string(client_id)
    if username:
        body += string(username)
    return b"\x10" + varint(len(body)) + body


def auth_packet(reason, method, data):
    body = bytes([reason]) + auth_props(method, data)
    return b"\xf0" + varint(len(body)) + body


class Conn:
    def __init__(self, broker):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise AssertionError(f"closed after {data!r}")
            data += chunk
        return data

    def frame(self, timeout=TIMEOUT):
        """(first byte, body) of the next packet, whatever it is."""
        self.sock.settimeout(timeout)
        first = self.read_exact(1)[0]
        length, shift = 0, 0
        while True:
            b = self.read_exact(1)[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return first, self.read_exact(length) if length else b""

    def silent(self, within=0.5):
        """True when nothing arrives within `within` seconds."""
        self.sock.settimeout(within)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
            return False  # a byte, or the connection closed
        except socket.timeout:
            return True

    def packet(self):
        """(type byte, reason code, {property id: value}) of the next packet (CONNACK, AUTH, DISCONNECT)."""
        self.sock.settimeout(TIMEOUT)
        first = self.read_exact(1)[0]
        length, shift = 0, 0
        while True:
            b = self.read_exact(1)[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = self.read_exact(length)
        kind = first >> 4
        pos = 1 if kind == 2 else 0  # CONNACK: flags byte first
        reason = body[pos] if pos < len(body) else 0
        pos += 1
        props = {}
        if pos < len(body):
            plen, shift, start = 0, 0, pos
            while True:
                b = body[pos]
                pos += 1
                plen |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            end = pos + plen
            while pos < end:
                pid = body[pos]
                pos += 1
                if pid in (0x15, 0x16, 0x1F, 0x12, 0x1A):  # strings / binary data
                    n = int.from_bytes(body[pos:pos + 2], "big")
                    props[pid] = body[pos + 2:pos + 2 + n]
                    pos += 2 + n
                elif pid in (0x21, 0x22, 0x13):
                    props[pid] = int.from_bytes(body[pos:pos + 2], "big")
                    pos += 2
                elif pid in (0x11, 0x27):
                    props[pid] = int.from_bytes(body[pos:pos + 4], "big")
                    pos += 4
                elif pid in (0x24, 0x25, 0x28, 0x29, 0x2A):
                    props[pid] = body[pos]
                    pos += 1
                else:
                    raise AssertionError(f"unexpected property {pid:#x} in {body!r}")
        return first, reason, props

    def send(self, data):
        self.sock.sendall(data)

    def closed(self):
        self.sock.settimeout(TIMEOUT)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()




def props_block(*pairs):
    """Encodes (id, value) properties: ints as 1/2/4 bytes by id, str/bytes as length-prefixed."""
    sizes = {0x01: 1, 0x17: 1, 0x19: 1, 0x21: 2, 0x22: 2, 0x23: 2, 0x11: 4, 0x27: 4, 0x18: 4, 0x02: 4}
    out = b""
    for pid, value in pairs:
        out += bytes([pid])
        if pid == 0x0B:
            out += varint(value)
        elif isinstance(value, int):
            out += value.to_bytes(sizes[pid], "big")
        else:
            out += string(value)
    return varint(len(out)) + out


def connect_props(client_id, props=(), clean=True, keepalive=60, will=None):
    """CONNECT v5 with properties; will = (topic, payload, qos, retain, will properties)."""
    flags = (0x02 if clean else 0)
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    body = string("MQTT") + bytes([5, flags]) + keepalive.to_bytes(2, "big") + props_block(*props) + string(client_id)
    if will:
        body += props_block(*will[4]) + string(will[0]) + string(will[1])
    return b"\x10" + varint(len(body)) + body


def publish_v5(topic, payload, qos=0, packet_id=1, props=(), retain=False):
    body = string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + props_block(*props) + payload
    return bytes([0x30 | (qos << 1) | (1 if retain else 0)]) + varint(len(body)) + body


def subscribe_v5(packet_id, filt, options, props=()):
    body = packet_id.to_bytes(2, "big") + props_block(*props) + string(filt) + bytes([options])
    return b"\x82" + varint(len(body)) + body


def parse_publish(first, body):
    """(topic, qos, packet id, payload) of a v5 PUBLISH frame."""
    assert first >> 4 == 3, hex(first)
    qos = (first >> 1) & 3
    n = int.from_bytes(body[:2], "big")
    topic, pos = body[2:2 + n].decode(), 2 + n
    packet_id = None
    if qos:
        packet_id, pos = int.from_bytes(body[pos:pos + 2], "big"), pos + 2
    plen, shift = 0, 0
    while True:
        b = body[pos]
        pos += 1
        plen |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return topic, qos, packet_id, body[pos + plen:]
