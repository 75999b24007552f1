"""Shared helpers for integration tests: start the real switchboard binary on loopback with
its own free ports and temp dir, talk SIP to it over UDP/TCP (stdlib only), stop it by PID.

Every wait is bounded; nothing sleeps for a fixed time where it can poll for a condition."""
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

BINARY = os.environ.get("SB_BINARY", "build/app/switchboard")
SOURCE_DIR = os.environ.get("SB_SOURCE_DIR", os.getcwd())


def free_port(hosts=("127.0.0.1",)):
    """A port free for both UDP and TCP on every host given. Below the kernel's ephemeral range
    (32768-60999 by default), which every socket bound to port 0 draws from, so that no
    client socket of a test running alongside takes it before our process binds it."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        ok = True
        socks = []
        try:
            for h in hosts:
                fam = socket.AF_INET6 if ":" in h else socket.AF_INET
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(fam, kind)
                    socks.append(s)
                    s.bind((h, port))
        except OSError:
            ok = False
        finally:
            for s in socks:
                s.close()
        if ok:
            return port
    raise RuntimeError("no free port")


class Proxy:
    """A switchboard process with a generated config."""

    def __init__(self, workers=1, ipv6=True, extra=None, transports=("udp", "tcp"), port=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="sbtest-")
        hosts = ["127.0.0.1"] + (["::1"] if ipv6 else [])
        self.port = port or free_port(tuple(hosts))
        listen = []
        for h in hosts:
            for t in transports:
                listen.append({"transport": t, "address": h, "port": self.port})
        self.config = {
            "workers": workers,
            "listen": listen,
            "domains": ["localhost", "127.0.0.1", "::1"],
            "location": {"backend": "memory"},
            "admin": {"address": "127.0.0.1", "port": free_port()},
            "script": {"path": os.path.join(SOURCE_DIR, "scripts", "default.lua")},
            "logging": {"level": "info", "format": "text"},
        }
        if extra:
            deep_update(self.config, extra)
        self.config_path = os.path.join(self.tmp.name, "switchboard.json")
        self.log_path = os.path.join(self.tmp.name, "switchboard.log")
        self.proc = None

    def write_config(self):
        """Atomically, so a reload never reads half a file."""
        write_atomic(self.config_path, json.dumps(self.config, indent=2))

    def start(self, wait_for_listeners=True):
        for _ in range(3):
            self.write_config()
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([BINARY, "run", "-c", self.config_path],
                                         stdout=self.log, stderr=subprocess.STDOUT)
            if not wait_for_listeners:
                return self
            self.wait_ready()
            if self.admin_listening():
                return self
            # Something else bound the admin port between free_port() and our bind: the proxy
            # runs without its admin API then (its log says "admin: ..."). Again on another.
            self.stop()
            self.config["admin"]["port"] = free_port()
        raise RuntimeError("the admin API did not come up:\n" + self.read_log())

    def admin_listening(self, timeout=2.0):
        """True when the admin API accepts connections (or none is configured)."""
        a = self.config.get("admin") or {}
        if not a.get("port") or a.get("enabled") is False:
            return True
        deadline = time.time() + timeout
        while True:
            try:
                socket.create_connection((a.get("address", "127.0.0.1"), a["port"]), timeout=0.5).close()
                return True
            except OSError:
                if time.time() >= deadline:
                    return False
                time.sleep(0.05)

    def wait_ready(self, timeout=10.0):
        """Ready when an OPTIONS over UDP to 127.0.0.1 gets any answer."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("switchboard exited early (%s):\n%s" % (self.proc.returncode, self.read_log()))
            try:
                c = UdpClient()
                c.dest = ("127.0.0.1", self.port)
                c.send(options("sip:127.0.0.1:%d" % self.port, c))
                r = c.recv_response(timeout=0.3, to=("127.0.0.1", self.port))
                c.close()
                if r is not None:
                    return
            except OSError:
                pass
        raise RuntimeError("switchboard did not become ready:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.log.close()
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def poll(cond, timeout, interval=0.05):
    """True once cond() holds, False if it does not within timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return False


def wait_until(cond, timeout, what):
    check(poll(cond, timeout), "timed out waiting for " + what)


def admin(p, method, path, body=None, headers=None):
    """One admin API request to Proxy p: (status, body text). A body is sent as JSON."""
    c = http.client.HTTPConnection("127.0.0.1", p.config["admin"]["port"], timeout=5)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def deep_update(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_update(dst[k], v)
        else:
            dst[k] = v


class Response:
    def __init__(self, raw):
        self.raw = raw
        text = raw.decode("utf-8", "replace")
        head, _, self.body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        self.start = lines[0]
        m = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
        self.is_response = bool(m)
        self.status = int(m.group(1)) if m else 0
        self.reason = m.group(2) if m else ""
        self.headers = []
        for line in lines[1:]:
            if ":" in line:
                n, _, v = line.partition(":")
                self.headers.append((n.strip(), v.strip()))

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self):
        return "<%s>" % self.start


class UdpClient:
    def __init__(self, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.transport = "UDP"
        self.dest = None

    def via_host(self):
        return "[%s]" % self.host if ":" in self.host else self.host

    def send(self, data, to=None):
        if isinstance(data, str):
            data = data.encode()
        to = to or self.dest
        self.sock.sendto(data, to)

    def recv(self, timeout=2.0):
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(70000)
            return data
        except socket.timeout:
            return None

    def recv_response(self, timeout=2.0, to=None, skip_provisional=False):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            data = self.recv(left)
            if data is None:
                return None
            r = Response(data)
            if skip_provisional and r.is_response and r.status < 200:
                continue
            return r

    def close(self):
        self.sock.close()


class TcpClient:
    def __init__(self, port, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect((host, port))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.transport = "TCP"
        self.buf = b""

    def via_host(self):
        return "[%s]" % self.host if ":" in self.host else self.host

    def send(self, data, to=None):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def recv_message(self, timeout=2.0):
        """One framed SIP message (Content-Length), or None on timeout/close."""
        deadline = time.time() + timeout
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                m = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", self.buf[:end + 2], re.I)
                clen = int(m.group(1)) if m else 0
                total = end + 4 + clen
                if len(self.buf) >= total:
                    msg, self.buf = self.buf[:total], self.buf[total:]
                    return msg
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def recv_raw(self, n, timeout=2.0):
        deadline = time.time() + timeout
        while len(self.buf) < n:
            left = deadline - time.time()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_response(self, timeout=2.0, to=None, skip_provisional=False):
        deadline = time.time() + timeout
        while True:
            data = self.recv_message(max(0.0, deadline - time.time()))
            if data is None:
                return None
            r = Response(data)
            if skip_provisional and r.is_response and r.status < 200:
                continue
            return r

    def close(self):
        self.sock.close()


def branch():
    return "z9hG4bK" + "%016x" % random.getrandbits(64)


def request(method, ruri, client, extra_headers=(), body="", call_id=None, cseq=1,
            from_uri="sip:alice@localhost", to_uri=None, max_forwards=70, via_branch=None):
    call_id = call_id or "%016x@test" % random.getrandbits(64)
    to_uri = to_uri or ruri
    lines = [
        "%s %s SIP/2.0" % (method, ruri),
        "Via: SIP/2.0/%s %s:%d;branch=%s;rport" % (client.transport, client.via_host(), client.port,
                                                   via_branch or branch()),
        "Max-Forwards: %d" % max_forwards,
        "From: <%s>;tag=%08x" % (from_uri, random.getrandbits(32)),
        "To: <%s>" % to_uri,
        "Call-ID: %s" % call_id,
        "CSeq: %d %s" % (cseq, method),
    ]
    lines += list(extra_headers)
    lines.append("Content-Length: %d" % len(body.encode()))
    return "\r\n".join(lines) + "\r\n\r\n" + body


def options(ruri, client, **kw):
    return request("OPTIONS", ruri, client, **kw)


def register(port, user, contact, expires=600, domain="localhost"):
    """REGISTER sip:user@domain at contact over UDP to 127.0.0.1:port; checks the 200."""
    c = UdpClient()
    c.dest = ("127.0.0.1", port)
    c.send(request("REGISTER", "sip:" + domain, c, extra_headers=["Contact: <%s>" % contact,
                                                                 "Expires: %d" % expires],
                   from_uri="sip:%s@%s" % (user, domain), to_uri="sip:%s@%s" % (user, domain)))
    r = c.recv_response(timeout=3, skip_provisional=True)
    c.close()
    check(r is not None and r.status == 200, "REGISTER %s: %r" % (user, r))


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(tests):
    """Run test functions; print a pass/fail line per test and the closing summary."""
    passed = failed = 0
    for t in tests:
        try:
            t()
            passed += 1
            print("PASS %s" % t.__name__, flush=True)
        except Exception as e:  # noqa: BLE001 - report and keep going
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            import traceback
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def metric(p, name, labels=""):
    """One sample of the proxy's /metrics: `labels` as written ('{reason="blocked"}', or ""
    for a family without labels); None when there is no such sample."""
    status, body = admin(p, "GET", "/metrics")
    check(status == 200, "/metrics: %d" % status)
    lab = re.escape(labels) if labels else r"(?:\{\})?"
    m = re.search(r"^%s%s (\d+)$" % (re.escape(name), lab), body, re.M)
    return int(m.group(1)) if m else None


def digest_hash(alg, s):
    """H() of RFC 7616 for algorithm `alg` ("MD5", "SHA-256", "SHA-512-256"), hex."""
    name = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}[alg]
    return hashlib.new(name, s.encode()).hexdigest()


def digest_credentials(method, uri, nonce, realm, password, alg="SHA-256", user="alice", nc=1,
                       cnonce="0a4f113b"):
    """An Authorization / Proxy-Authorization value (RFC 7616, qop=auth) for a challenge."""
    h1 = digest_hash(alg, "%s:%s:%s" % (user, realm, password))
    h2 = digest_hash(alg, "%s:%s" % (method, uri))
    ncs = "%08x" % nc
    resp = digest_hash(alg, ":".join([h1, nonce, ncs, cnonce, "auth", h2]))
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
            'algorithm=%s, qop=auth, nc=%s, cnonce="%s"' % (user, realm, nonce, uri, resp, alg, ncs, cnonce))
