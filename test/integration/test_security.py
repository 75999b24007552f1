"""Issue 10, denial-of-service part (docs/security.md), with the real binary on loopback:

- flood: 127.0.0.2 floods OPTIONS/INVITE far above its rate while SIPp on 127.0.0.1 places
  calls at a normal rate: every call succeeds, the flooder is dropped and then blocked, the
  proxy's RSS stays bounded, /metrics counts the refusals by reason;
- relay: an unauthenticated INVITE for a foreign domain from an untrusted source gets 403
  and nothing reaches the foreign target (a UDP socket on 127.0.0.3), nor does a forged
  "in-dialog" one; the same INVITE from a trusted source is relayed;
- the shipped default script: untrusted REGISTER → 401 and INVITE → 407 (with config auth),
  403 without it; good credentials register; trusted sources as before;
- connections per source: the connection beyond the limit is closed at once;
- transactions in flight beyond limits.max_transactions: 503 + Retry-After, counted;
- reload: a new trusted list applies without a restart.

Workers 1 and 2 where the outcome does not depend on which worker a source lands on."""
import json
import os
import re
import socket
import threading
import time
import sbtest
from sbtest import Proxy, UdpClient, TcpClient, check
from sipp import Sipp

REALM = "sbtest"
PASSWORD = "s3cret"

# The flood test's policy: plain registrar + location routing, no authentication, so both
# sources are limited by the transport alone.
FLOOD_SCRIPT = """
function on_request(req)
  if req.method == "REGISTER" then return registrar.save(req) end
  if req:in_dialog() then return req:relay() end
  if req.method == "INVITE" then req:record_route() end
  local contacts = location.lookup(req.uri)
  if #contacts == 0 then return req:reply(404) end
  return req:relay(contacts)
end
"""


metric = sbtest.metric


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def send_from(host, port, method, ruri, extra=(), from_uri="sip:alice@localhost", to_uri=None, timeout=2):
    c = UdpClient(host)
    c.dest = ("127.0.0.1", port)
    c.send(sbtest.request(method, ruri, c, extra_headers=list(extra), from_uri=from_uri, to_uri=to_uri))
    r = c.recv_response(timeout=timeout, skip_provisional=True)
    c.close()
    return r


class Flooder(threading.Thread):
    """Sends OPTIONS and INVITEs from 127.0.0.2 at about `rate` per second until stopped
    (bounded by `limit` messages); counts the answers it gets."""

    def __init__(self, port, rate=3000, limit=40000):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.setblocking(False)
        self.dest = ("127.0.0.1", port)
        self.rate = rate
        self.limit = limit
        self.sent = 0
        self.answers = 0
        self.stop_flag = threading.Event()
        me = self.sock.getsockname()[1]
        self.msgs = []
        for i in range(64):
            method, ruri = ("OPTIONS", "sip:127.0.0.1") if i % 2 == 0 else ("INVITE", "sip:nobody@localhost")
            self.msgs.append(("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:%d;branch=z9hG4bKflood%d.%d;rport\r\n"
                              "Max-Forwards: 70\r\nFrom: <sip:flood@127.0.0.2>;tag=f%d\r\nTo: <%s>\r\n"
                              "Call-ID: flood-%d@127.0.0.2\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n"
                              % (method, ruri, me, i, time.time_ns(), i, ruri, i, method)).encode())

    def drain(self):
        while True:
            try:
                self.sock.recv(65536)
                self.answers += 1
            except (BlockingIOError, OSError):
                return

    def run(self):
        start = time.time()
        while not self.stop_flag.is_set() and self.sent < self.limit:
            due = int((time.time() - start) * self.rate)
            while self.sent < due and self.sent < self.limit:
                try:
                    self.sock.sendto(self.msgs[self.sent % len(self.msgs)], self.dest)
                except BlockingIOError:
                    break
                self.sent += 1
            self.drain()
            time.sleep(0.002)
        self.drain()

    def stop(self):
        self.stop_flag.set()
        self.join(10)
        self.drain()
        self.sock.close()


def test_flood_does_not_hurt_a_normal_source():
    for workers in (1, 2):
        p = Proxy(workers=workers, ipv6=False, extra={
            "security": {"trusted": [],  # nobody is exempt: both sources are limited
                         "rate_limit": {"rate_per_s": 100, "burst": 200, "block_after": 500, "block_s": 60}}})
        script = os.path.join(p.tmp.name, "flood.lua")
        with open(script, "w") as f:
            f.write(FLOOD_SCRIPT)
        p.config["script"] = {"path": script}
        with p:
            rss_before = rss_kb(p.proc.pid)
            uas = Sipp("uas.xml", p.tmp.name, calls=40).start()
            sbtest.register(p.port, "bob", "sip:bob@127.0.0.1:%d" % uas.port)
            flood = Flooder(p.port)
            flood.start()
            # Let the flood get going (bounded poll on what it sent), then place the calls.
            sbtest.wait_until(lambda: flood.sent > 1000, 10, "the flood to start")
            uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service="bob", calls=40,
                       keys={"domain": "localhost"}, extra=["-r", "10"]).start()
            rc_uac = uac.wait(90)
            rc_uas = uas.wait(30)
            flood.stop()
            rss_after = rss_kb(p.proc.pid)
            check(rc_uac == 0 and rc_uas == 0, "workers=%d: every call of the normal source succeeds: uac %d uas %d\n%s\n%s"
                  % (workers, rc_uac, rc_uas, uac.messages()[-2000:], p.read_log()[-2000:]))
            check(flood.sent >= 5000, "the flood was sent: %d" % flood.sent)
            # Answered: at most the burst plus the rate over the flood's duration (a second of slack).
            check(flood.answers <= 200 + 100 * 12, "the flooder got few answers: %d of %d" % (flood.answers, flood.sent))
            limited = metric(p, "switchboard_refused_total", '{reason="rate_limited"}')
            blocked = metric(p, "switchboard_refused_total", '{reason="blocked"}')
            sources_blocked = metric(p, "switchboard_sources_blocked_total")
            check(limited is not None and limited >= 500, "rate_limited counted: %r" % limited)
            check(blocked is not None and blocked > 1000, "blocked counted: %r" % blocked)
            check(sources_blocked == 1, "one source blocked: %r" % sources_blocked)
            check(metric(p, "switchboard_refused_total", '{reason="overload"}') == 0, "no overload")
            # Bounded memory: the rate table is allocated up front; a flood adds no state.
            check(rss_after - rss_before < 32 * 1024, "RSS bounded: %d kB → %d kB" % (rss_before, rss_after))
            print("  workers=%d: flood sent %d, answered %d, rate_limited %d, blocked %d, RSS %d → %d kB"
                  % (workers, flood.sent, flood.answers, limited, blocked, rss_before, rss_after), flush=True)


def test_tcp_flood_is_limited_then_cut():
    # Stream frames are limited like datagrams; a blocked source loses its connection.
    for workers in (1, 2):
        with Proxy(workers=workers, ipv6=False, extra={
                "security": {"trusted": ["127.0.0.1"],
                             "rate_limit": {"rate_per_s": 1, "burst": 5, "block_after": 20, "block_s": 60}}}) as p:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", p.port))
            me = s.getsockname()[1]
            batch = b"".join(("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2:%d;branch=z9hG4bKtcp%d\r\n"
                              "Max-Forwards: 70\r\nFrom: <sip:f@127.0.0.2>;tag=%d\r\nTo: <sip:127.0.0.1>\r\n"
                              "Call-ID: tcpflood-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                              % (me, i, i, i)).encode() for i in range(100))
            try:
                s.sendall(batch)
            except OSError:
                pass
            data = b""
            closed = False
            deadline = time.time() + 5
            while time.time() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except OSError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                data += chunk
            s.close()
            answers = data.count(b"SIP/2.0 200")
            check(closed, "workers=%d: the blocked source's connection was closed" % workers)
            check(1 <= answers <= 6, "only the burst was answered: %d" % answers)
            check(metric(p, "switchboard_refused_total", '{reason="rate_limited"}') == 20, "rate_limited counted")
            check(metric(p, "switchboard_sources_blocked_total") == 1, "source blocked")
            if workers > 1:
                continue  # the next connection may land on a worker that has not blocked it
            # While blocked, a new connection from it is closed at once.
            s2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s2.bind(("127.0.0.2", 0))
            s2.settimeout(5)
            s2.connect(("127.0.0.1", p.port))
            try:
                eof = s2.recv(1) == b""
            except socket.timeout:
                eof = False
            except OSError:
                eof = True
            s2.close()
            check(eof, "a blocked source's new connection is closed")


def test_not_an_open_relay():
    for workers in (1, 2):
        with Proxy(workers=workers, ipv6=False, extra={"security": {"trusted": ["127.0.0.1"]}}) as p:
            target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            target.bind(("127.0.0.3", 0))
            tport = target.getsockname()[1]
            foreign = "sip:bob@127.0.0.3:%d" % tport  # 127.0.0.3 is not one of our domains

            # Untrusted, unauthenticated: 403 whoever the From claims to be.
            r = send_from("127.0.0.2", p.port, "INVITE", foreign)
            check(r is not None and r.status == 403, "workers=%d: untrusted INVITE to a foreign domain → 403: %r" % (workers, r))
            r = send_from("127.0.0.2", p.port, "INVITE", foreign, from_uri="sip:eve@evil.example")
            check(r is not None and r.status == 403 and "relay" in r.reason,
                  "foreign user → 403 Not a relay: %r" % r)
            # A forged in-dialog request (To tag, no Route of ours): 403 too.
            r = send_from("127.0.0.2", p.port, "BYE", foreign, to_uri="sip:bob@127.0.0.3;tag=forged")
            check(r is not None and r.status == 403, "forged in-dialog request → 403: %r" % r)
            target.settimeout(0.5)
            try:
                data = target.recv(65536)
            except socket.timeout:
                data = None
            check(data is None, "nothing was sent to the foreign target: %r" % (data and data[:200]))
            n = metric(p, "switchboard_refused_total", '{reason="forbidden"}')
            check(n == 3, "workers=%d: the policy's 403s counted as forbidden: %r" % (workers, n))

            # Trusted: the same INVITE is relayed (so the socket above would have seen one).
            c = UdpClient("127.0.0.1")
            c.dest = ("127.0.0.1", p.port)
            c.send(sbtest.request("INVITE", foreign, c))
            target.settimeout(3)
            try:
                data, _ = target.recvfrom(65536)
            except socket.timeout:
                data = None
            check(data is not None and data.startswith(b"INVITE sip:bob@127.0.0.3"),
                  "a trusted source's INVITE is relayed: %r\n%s" % (data, p.read_log()[-1500:]))
            c.close()
            target.close()


H = sbtest.digest_hash


def credentials(method, uri, nonce, user="alice", password=PASSWORD, alg="SHA-256"):
    return sbtest.digest_credentials(method, uri, nonce, REALM, password, alg=alg, user=user)


def register_from(host, port, extra=(), user="alice"):
    c = UdpClient(host)
    c.dest = ("127.0.0.1", port)
    c.send(sbtest.request("REGISTER", "sip:localhost", c,
                          extra_headers=["Contact: <sip:%s@%s:%d>" % (user, host, c.port)] + list(extra),
                          from_uri="sip:%s@localhost" % user, to_uri="sip:%s@localhost" % user))
    r = c.recv_response(timeout=3, skip_provisional=True)
    c.close()
    return r


def test_default_script_untrusted_must_authenticate():
    # With config auth and a users file: 401 / 407, then good credentials register.
    p = Proxy(workers=2, ipv6=False, extra={"security": {"trusted": ["127.0.0.1"]}})
    users = {"realm": REALM, "users": {"alice": {"ha1_sha256": H("SHA-256", "alice:%s:%s" % (REALM, PASSWORD)),
                                                 "aors": ["sip:alice@localhost"]}}}
    with open(os.path.join(p.tmp.name, "users.json"), "w") as f:
        json.dump(users, f)
    p.config["auth"] = {"users_file": "users.json", "algorithms": ["SHA-256"]}
    with p:
        r = register_from("127.0.0.2", p.port)
        check(r is not None and r.status == 401 and r.header("WWW-Authenticate"), "untrusted REGISTER → 401: %r" % r)
        nonce = re.search(r'nonce="([^"]+)"', r.header("WWW-Authenticate")).group(1)
        ok = register_from("127.0.0.2", p.port, ["Authorization: " + credentials("REGISTER", "sip:localhost", nonce)])
        check(ok is not None and ok.status == 200, "untrusted REGISTER with credentials → 200: %r\n%s"
              % (ok, p.read_log()[-1500:]))
        r = send_from("127.0.0.2", p.port, "INVITE", "sip:alice@localhost")
        check(r is not None and r.status == 407 and r.header("Proxy-Authenticate"), "untrusted INVITE → 407: %r" % r)
        n = metric(p, "switchboard_refused_total", '{reason="auth_challenge"}')
        check(n == 2, "the 401 and the 407 counted as auth_challenge: %r" % n)
        # Trusted: no challenge.
        r = register_from("127.0.0.1", p.port, user="bob")
        check(r is not None and r.status == 200, "trusted REGISTER → 200: %r" % r)

    # Without config auth (the shipped config): nobody outside can register or call.
    with Proxy(workers=1, ipv6=False, extra={"security": {"trusted": ["127.0.0.1"]}}) as p:
        r = register_from("127.0.0.2", p.port)
        check(r is not None and r.status == 403, "untrusted REGISTER without auth → 403: %r" % r)
        r = send_from("127.0.0.2", p.port, "INVITE", "sip:alice@localhost")
        check(r is not None and r.status == 403, "untrusted INVITE without auth → 403: %r" % r)
        r = register_from("127.0.0.1", p.port)
        check(r is not None and r.status == 200, "trusted REGISTER → 200: %r" % r)


def test_connections_per_source():
    with Proxy(workers=1, ipv6=False, extra={"security": {"trusted": ["127.0.0.1"],
                                                          "max_connections_per_source": 2}}) as p:
        def connect(host):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", p.port))
            return s

        def alive(s):
            # Closed by the proxy: a read sees EOF (or a reset); open: it times out.
            s.settimeout(0.5)
            try:
                return s.recv(1) != b""
            except socket.timeout:
                return True
            except OSError:
                return False

        a, b = connect("127.0.0.2"), connect("127.0.0.2")
        c = connect("127.0.0.2")
        check(not alive(c), "the third connection from 127.0.0.2 is closed")
        check(alive(a) and alive(b), "the first two stay open")
        check(metric(p, "switchboard_refused_total", '{reason="connections_per_source"}') == 1, "counted")
        # Trusted sources are not limited; a closed connection frees its place.
        trusted = [connect("127.0.0.1") for _ in range(4)]
        check(all(alive(t) for t in trusted), "trusted connections stay open")
        a.close()
        ok = sbtest.poll(lambda: alive_after_connect(connect, alive), 5)
        check(ok, "after one closed, 127.0.0.2 may connect again")
        for s in [b, c] + trusted:
            s.close()


def alive_after_connect(connect, alive):
    s = connect("127.0.0.2")
    ok = alive(s)
    if not ok:
        s.close()
    return ok


def test_overload_503_retry_after():
    # Transactions in flight beyond limits.max_transactions: 503 + Retry-After, counted.
    with Proxy(workers=1, ipv6=False, extra={"limits": {"max_transactions": 4}}) as p:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a callee that never answers
        silent.bind(("127.0.0.1", 0))
        sbtest.register(p.port, "bob", "sip:bob@127.0.0.1:%d" % silent.getsockname()[1])
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        got = None
        for _ in range(10):
            c.send(sbtest.request("INVITE", "sip:bob@localhost", c))
            r = c.recv_response(timeout=1, skip_provisional=True)
            if r is not None and r.status == 503:
                got = r
                break
        check(got is not None and got.header("Retry-After"), "503 with Retry-After: %r" % got)
        n = metric(p, "switchboard_refused_total", '{reason="overload"}')
        check(n is not None and n >= 1, "overload counted: %r" % n)
        c.close()
        silent.close()


def test_reload_applies_trusted():
    with Proxy(workers=2, ipv6=False, extra={"security": {"trusted": ["127.0.0.1"]}}) as p:
        r = register_from("127.0.0.2", p.port)
        check(r is not None and r.status == 403, "untrusted before the reload: %r" % r)
        p.config["security"]["trusted"] = ["127.0.0.1", "127.0.0.2/32"]
        p.write_config()
        status, body = sbtest.admin(p, "POST", "/reload")
        check(status == 200, "reload: %d %s" % (status, body))
        # Every worker applies it on its own thread: poll until both did (bounded).
        check(sbtest.poll(lambda: all((register_from("127.0.0.2", p.port) or sbtest.Response(b"")).status == 200
                                      for _ in range(4)), 5),
              "trusted after the reload")
        # A bad network is refused with its key path, and changes nothing.
        p.config["security"]["trusted"] = ["127.0.0.1/8"]
        p.write_config()
        status, body = sbtest.admin(p, "POST", "/reload")
        check(status != 200 and "security.trusted[0]" in body, "bad reload refused: %d %s" % (status, body))
        r = register_from("127.0.0.2", p.port)
        check(r is not None and r.status == 200, "still trusted: %r" % r)


if __name__ == "__main__":
    sbtest.run([test_tcp_flood_is_limited_then_cut, test_not_an_open_relay, test_default_script_untrusted_must_authenticate,
                test_connections_per_source, test_overload_503_retry_after, test_reload_applies_trusted,
                test_flood_does_not_hurt_a_normal_source])
