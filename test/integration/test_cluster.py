"""Issue 11: a cluster of switchboards sharing location through Redis (docs/cluster.md).
A real redis-server (a dependency: the test fails without it) on a free loopback port, two
switchboard processes on their own ports, SIPp user agents. Every wait is bounded."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import sbtest
from sbtest import Proxy, UdpClient, admin, check, poll, register, request
from sipp import SCENARIOS, Sipp


class Redis:
    """redis-server on 127.0.0.1:<free port>, no persistence, stopped by PID."""

    def __init__(self, port=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="sbtest-redis-")
        self.port = port or sbtest.free_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.tmp.name, "redis.log"), "ab")
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", self.tmp.name],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        check(poll(lambda: self.cli("PING") == "PONG", 10), "redis-server did not start")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cli(self, *args):
        try:
            r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--raw"] + list(args),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        return r.stdout.decode("utf-8", "replace").strip()

    def hgetall(self, key):
        lines = self.cli("HGETALL", key).splitlines()
        return dict(zip(lines[0::2], lines[1::2]))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.tmp.cleanup()


def node(redis, workers=2, t1_ms=None):
    p = Proxy(workers=workers, ipv6=False)
    sbtest.deep_update(p.config, {"location": {"backend": "redis", "redis": {
        "servers": ["127.0.0.1:%d" % redis.port], "prefix": "sbt:", "reconnect_ms": 100,
        "connect_timeout_ms": 500, "command_timeout_ms": 500}}})
    if t1_ms:
        p.config["timers"] = {"t1_ms": t1_ms}  # Timer B = 64*T1
    return p


def bindings(p, aor):
    st, body = admin(p, "GET", "/location?aor=" + aor)
    check(st == 200, "GET /location on %d: %d %s" % (p.port, st, body))
    data = json.loads(body)
    return data if isinstance(data, list) else data.get("bindings", data.get("entries", []))


def relayed(p):
    st, body = admin(p, "GET", "/stats")
    return json.loads(body).get("counters", {}).get("proxy_relayed", 0) if st == 200 else 0


def health(p):
    st, body = admin(p, "GET", "/health")
    return st, json.loads(body)


def sipp_register(p, user, contact_port, tmp, expires=600):
    csv = os.path.join(tmp, "users-%s.csv" % user)
    with open(csv, "w") as f:
        f.write("SEQUENTIAL\n%s\n" % user)
    cmd = ["sipp", "127.0.0.1:%d" % p.port, "-sf", os.path.join(SCENARIOS, "register.xml"),
           "-inf", csv, "-m", "1", "-i", "127.0.0.1", "-p", "0",
           "-key", "domain", "localhost", "-key", "contact_host", "127.0.0.1",
           "-key", "contact_port", str(contact_port), "-key", "expires", str(expires),
           "-nostdin", "-timeout", "20s", "-timeout_error"]
    r = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    check(r.returncode == 0, "sipp REGISTER %s on %d: %s" % (user, p.port, r.stdout.decode()[-1500:]))


def call(via, user, uas, calls=1, rate=None, hold_ms=50):
    extra = ["-r", str(rate)] if rate else []
    uac = Sipp("uac.xml", via.tmp.name, remote="127.0.0.1:%d" % via.port, service=user, calls=calls,
               keys={"domain": "localhost"}, hold_ms=hold_ms, extra=extra).start()
    return uac


def test_register_on_a_call_through_b_deregister_on_b():
    # workers: 1 on A and 2 on B (every test must pass with both).
    with Redis() as redis, node(redis, workers=1) as a, node(redis) as b:
        uas = Sipp("uas.xml", a.tmp.name).start()
        contact = "sip:bob@127.0.0.1:%d;transport=udp" % uas.port
        sipp_register(a, "bob", uas.port, a.tmp.name)
        # Written through to Redis, one hash per AOR with a TTL, owner recorded.
        h = redis.hgetall("sbt:aor:sip:bob@localhost")
        check(len(h) == 1, "HGETALL after REGISTER on A: %r" % h)
        value = json.loads(list(h.values())[0])
        check(value["node"] == "udp:127.0.0.1:%d" % a.port, "owner node: %r" % value)
        ttl = int(redis.cli("PTTL", "sbt:aor:sip:bob@localhost"))
        check(590_000 < ttl <= 600_000, "key TTL = binding expiry: %d" % ttl)

        check(poll(lambda: len(bindings(b, "sip:bob@localhost")) == 1, 5), "B learned the binding")
        uac = call(b, "bob", uas)
        rc_uac, rc_uas = uac.wait(60), uas.wait(30)
        check(rc_uac == 0 and rc_uas == 0, "call through B reached the UA registered on A: uac %d uas %d\n%s\n%s" % (
            rc_uac, rc_uas, uac.messages()[-2000:], b.read_log()[-2000:]))

        # De-registration on B is seen by A within the documented window (docs/cluster.md).
        t0 = time.time()
        register(b.port, "bob", contact, expires=0)
        check(poll(lambda: bindings(a, "sip:bob@localhost") == [], 2.0, interval=0.005),
              "A dropped the binding removed on B")
        print("de-registration on B seen by A after %.1f ms" % ((time.time() - t0) * 1000), flush=True)
        check(redis.hgetall("sbt:aor:sip:bob@localhost") == {}, "gone from Redis")
        st, h = health(a)
        check(st == 200 and h["status"] == "ok", "A healthy: %r" % h)


def test_node_killed_bindings_survive_and_reregister_on_b():
    with Redis() as redis, node(redis) as a, node(redis) as b:
        uas = Sipp("uas.xml", b.tmp.name, calls=2).start()
        register(a.port, "carol", "sip:carol@127.0.0.1:%d" % uas.port)
        check(poll(lambda: len(bindings(b, "sip:carol@localhost")) == 1, 5), "B learned carol")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        check(len(redis.hgetall("sbt:aor:sip:carol@localhost")) == 1, "A's binding still in Redis")
        check(len(bindings(b, "sip:carol@localhost")) == 1, "B serves A's binding")
        uac = call(b, "carol", uas)
        check(uac.wait(60) == 0, "call through B after A died:\n%s" % uac.messages()[-2000:])

        # The UA re-registers on B: B now owns the binding and it is reachable.
        register(b.port, "carol", "sip:carol@127.0.0.1:%d" % uas.port)
        h = redis.hgetall("sbt:aor:sip:carol@localhost")
        check(poll(lambda: json.loads(list(redis.hgetall("sbt:aor:sip:carol@localhost").values())[0])["node"]
                   == "udp:127.0.0.1:%d" % b.port, 5), "B owns the binding now: %r" % h)
        uac = call(b, "carol", uas)
        check(uac.wait(60) == 0 and uas.wait(30) == 0, "call after re-registering on B")
        # A fresh node started now reads the stored bindings.
        with node(redis) as c:
            check(len(bindings(c, "sip:carol@localhost")) == 1, "a new node loads the bindings")


def test_redis_down_under_load_then_catch_up():
    with Redis() as redis, node(redis) as a, node(redis) as b:
        uas = Sipp("uas.xml", a.tmp.name, calls=40).start()
        register(a.port, "dave", "sip:dave@127.0.0.1:%d" % uas.port)
        check(poll(lambda: len(bindings(b, "sip:dave@localhost")) == 1, 5), "B learned dave")
        uac = call(b, "dave", uas, calls=40, rate=20, hold_ms=20)
        # Stop Redis in the middle of the call load.
        check(poll(lambda: relayed(b) >= 10, 20), "calls are flowing through B")
        redis.stop()
        check(poll(lambda: health(b)[1].get("status") == "degraded", 5), "B reports degraded: %r" % (health(b),))
        st, h = health(b)
        check(st == 200, "degraded still answers 200: %d" % st)
        # REGISTERs still get 200 on both nodes (local table).
        register(b.port, "erin", "sip:erin@127.0.0.1:5999")
        register(a.port, "frank", "sip:frank@127.0.0.1:5998")
        rc = uac.wait(90)
        check(rc == 0 and uas.wait(30) == 0, "calls to the cached user kept flowing: %d\n%s" % (
            rc, uac.messages()[-2000:]))
        st, m = admin(b, "GET", "/metrics")
        d = re.search(r"^switchboard_location_store_disconnects_total(?:\{[^}]*\})? (\d+)", m, re.M)
        check(d and int(d.group(1)) >= 1, "disconnects counted: %r" % (d and d.group(0)))

        redis.start()  # same port, empty: what was registered meanwhile must reach it
        check(poll(lambda: len(redis.hgetall("sbt:aor:sip:erin@localhost")) == 1, 10), "erin written after restart")
        check(poll(lambda: len(redis.hgetall("sbt:aor:sip:frank@localhost")) == 1, 10), "frank written after restart")
        check(poll(lambda: health(b)[1].get("status") == "ok", 10), "B healthy again")
        check(poll(lambda: len(bindings(a, "sip:erin@localhost")) == 1, 10), "A caught up with erin")
        check(poll(lambda: len(bindings(b, "sip:frank@localhost")) == 1, 10), "B caught up with frank")
        # Redis came back empty: what the nodes held from before the outage is kept.
        check(len(bindings(b, "sip:dave@localhost")) == 1 and len(bindings(a, "sip:dave@localhost")) == 1,
              "dave kept on both nodes")


def test_lookup_miss_reads_through_and_times_out_with_500():
    with Redis() as redis, node(redis) as b:
        uas = Sipp("uas.xml", b.tmp.name).start()
        # Stored by a node whose PUBLISH b never saw: b's table misses, b reads Redis.
        value = json.dumps({"contact": "sip:gina@127.0.0.1:%d" % uas.port, "expires_at": int(time.time() * 1000) + 600000,
                            "transport": "UDP", "call_id": "x", "cseq": 1, "node": "elsewhere", "q": 1000})
        check(poll(lambda: health(b)[1].get("status") == "ok", 10), "b connected (and caught up)")
        redis.cli("HSET", "sbt:aor:sip:gina@localhost", "c:sip:gina@127.0.0.1:%d" % uas.port, value)
        check(bindings(b, "sip:gina@localhost") == [], "b does not hold gina yet")
        uac = call(b, "gina", uas)
        check(uac.wait(60) == 0 and uas.wait(30) == 0, "call through b after a read-through:\n%s" % uac.messages()[-2000:])
        check(len(bindings(b, "sip:gina@localhost")) == 1, "b cached what it read")
        st, body = admin(b, "GET", "/stats")
        check(json.loads(body)["counters"].get("location_store_fetches", 0) >= 1, "read through: %s" % body)

        # Redis hangs: a request for a user b does not hold waits command_timeout_ms, then 500.
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            c = UdpClient()
            c.dest = ("127.0.0.1", b.port)
            t0 = time.time()
            c.send(request("INVITE", "sip:nobody@localhost", c, extra_headers=["Contact: <sip:x@127.0.0.1>"]))
            r = c.recv_response(timeout=5, skip_provisional=True)
            c.close()
            check(r is not None and r.status == 500, "500 when redis does not answer: %r" % r)
            check(time.time() - t0 < 3, "answered within the timeout")
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        st, body = admin(b, "GET", "/stats")
        check(json.loads(body)["counters"].get("location_store_fetch_failures", 0) >= 1, "counted: %s" % body)


def reply_to(msg, status, reason):
    """A response to request `msg` (a Response object), with a To tag."""
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    for n, v in msg.headers:
        if n.lower() in ("via", "from", "call-id", "cseq"):
            lines.append("%s: %s" % (n, v))
        elif n.lower() == "to":
            lines.append("To: %s;tag=ua%d" % (v, status))
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


def test_flow_held_by_a_is_reached_through_a():
    # RFC 3327 / 5626: a UA registered over TCP on A; a call placed through B goes B -> A ->
    # the UA's own connection. When A is gone, the caller gets a final failure, not silence.
    with Redis() as redis, node(redis) as a, node(redis) as b:
        b.config["timers"] = {"t1_ms": 50}
        b.stop()
        b.start()
        ua = sbtest.TcpClient(a.port)
        contact = "sip:hugo@127.0.0.1:%d;transport=tcp" % ua.port
        ua.send(request("REGISTER", "sip:localhost", ua, extra_headers=["Contact: <%s>" % contact, "Expires: 600"],
                        from_uri="sip:hugo@localhost", to_uri="sip:hugo@localhost"))
        r = ua.recv_response(timeout=3, skip_provisional=True)
        check(r is not None and r.status == 200, "REGISTER over TCP on A: %r" % r)
        check(poll(lambda: len(bindings(b, "sip:hugo@localhost")) == 1, 5), "B learned hugo")

        caller = UdpClient()
        caller.dest = ("127.0.0.1", b.port)
        caller.send(request("INVITE", "sip:hugo@localhost", caller,
                            extra_headers=["Contact: <sip:caller@127.0.0.1:%d>" % caller.port]))
        raw = ua.recv_message(timeout=5)
        check(raw is not None, "the INVITE reached the UA over its own connection to A:\n%s\n%s" % (
            b.read_log()[-1500:], a.read_log()[-1500:]))
        inv = sbtest.Response(raw)
        vias = [v.strip() for line in inv.all("Via") for v in line.split(",")]
        check(inv.start.startswith("INVITE sip:hugo@127.0.0.1:%d;transport=tcp" % ua.port), inv.start)
        # B's Via names the reply port of its worker that forwarded (not its listener).
        check(len(vias) >= 3 and ":%d;" % a.port in vias[0] and "branch=z9hG4bKsb" in vias[1] and
              vias[1].startswith("SIP/2.0/UDP 127.0.0.1:") and "received=" not in vias[1],
              "through B then A: %r" % vias)
        ua.send(reply_to(inv, 486, "Busy Here"))
        r = caller.recv_response(timeout=5, skip_provisional=True)
        check(r is not None and r.status == 486, "the UA's answer came back to the caller: %r" % r)
        ua.close()

        # A flow Redis says A holds but A does not (a stale copy): A answers 430 Flow Failed
        # to B, and the caller gets 480 (RFC 5626 §5.3).
        ghost = {"contact": "sip:ghost@127.0.0.1:9;transport=tcp", "expires_at": int(time.time() * 1000) + 600000,
                 "transport": "TCP", "ip": "127.0.0.1", "port": 9, "call_id": "g", "cseq": 1, "q": 1000,
                 "node": "udp:127.0.0.1:%d" % a.port, "node_uri": "sip:127.0.0.1:%d;transport=udp" % a.port}
        redis.cli("HSET", "sbt:aor:sip:ghost@localhost", "c:" + ghost["contact"], json.dumps(ghost))
        caller.send(request("INVITE", "sip:ghost@localhost", caller, call_id="ghost-call",
                            extra_headers=["Contact: <sip:caller@127.0.0.1:%d>" % caller.port]))
        deadline = time.time() + 10
        r = None
        while time.time() < deadline:
            r = caller.recv_response(timeout=deadline - time.time(), skip_provisional=True)
            if r is None or r.header("Call-ID") == "ghost-call":
                break
        check(r is not None and r.header("Call-ID") == "ghost-call" and r.status == 480,
              "480 after the owner's 430: %r\n%s" % (r, a.read_log()[-1500:]))

        # A dies: the branch through A fails and the caller gets a final answer (no hang).
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        caller.send(request("INVITE", "sip:hugo@localhost", caller, call_id="owner-gone",
                            extra_headers=["Contact: <sip:caller@127.0.0.1:%d>" % caller.port]))
        # (B retransmits the first call's 486 to us, never ACKed: skip it.)
        deadline = time.time() + 15
        r = None
        while time.time() < deadline:
            r = caller.recv_response(timeout=deadline - time.time(), skip_provisional=True)
            if r is None or r.header("Call-ID") == "owner-gone":
                break
        check(r is not None and r.header("Call-ID") == "owner-gone" and r.status == 480,
              "480 when the owner is gone: %r" % r)
        print("owner gone: caller got %d %s" % (r.status, r.reason), flush=True)
        caller.close()


def recv_final(client, call_id, timeout):
    """The first final response for `call_id` (others' retransmissions skipped), or None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.recv_response(timeout=deadline - time.time(), skip_provisional=True)
        if r is None or r.header("Call-ID") == call_id:
            return r
    return None


def recv_request(client, method, call_id, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        raw = client.recv(deadline - time.time())
        if raw is None:
            return None
        m = sbtest.Response(raw)
        if m.start.startswith(method + " ") and m.header("Call-ID") == call_id:
            return m
    return None


def test_mixed_aor_owner_gone_gets_the_best_answer():
    # ivy has two bindings: a UDP one (reached from any node) and a TCP flow held by A (reached
    # through A, RFC 5626). A dies: the branch through A counts as 480 (docs/cluster.md), so the
    # caller gets the UDP binding's answer or 480, never the dead hop's 408 or 500 (RFC 3261
    # §16.7 step 6: the lowest class wins).
    with Redis() as redis, node(redis) as a, node(redis, t1_ms=50) as b:
        # The flow has the higher q, so its branch is tried first (RFC 3261 §16.6: one q-group
        # after another) and, of two 4xx, the one the proxy keeps (it used to be the dead hop's 408).
        ua = UdpClient()
        ua.dest = ("127.0.0.1", b.port)
        ua.send(request("REGISTER", "sip:localhost", ua, from_uri="sip:ivy@localhost", to_uri="sip:ivy@localhost",
                        extra_headers=["Contact: <sip:ivy@127.0.0.1:%d>;q=0.5" % ua.port, "Expires: 600"]))
        r = ua.recv_response(timeout=3, skip_provisional=True)
        check(r is not None and r.status == 200, "REGISTER over UDP on B: %r" % r)
        flow = sbtest.TcpClient(a.port)
        contact = "sip:ivy@127.0.0.1:%d;transport=tcp" % flow.port
        flow.send(request("REGISTER", "sip:localhost", flow, extra_headers=["Contact: <%s>" % contact, "Expires: 600"],
                          from_uri="sip:ivy@localhost", to_uri="sip:ivy@localhost"))
        r = flow.recv_response(timeout=3, skip_provisional=True)
        check(r is not None and r.status == 200, "REGISTER over TCP on A: %r" % r)
        check(poll(lambda: len(bindings(b, "sip:ivy@localhost")) == 2, 5), "B holds both of ivy's bindings")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        flow.close()

        caller = UdpClient()
        caller.dest = ("127.0.0.1", b.port)
        for answer, allowed in ((486, (486, 480)), (None, (480,))):
            call_id = "mixed-%s" % answer
            caller.send(request("INVITE", "sip:ivy@localhost", caller, call_id=call_id,
                                extra_headers=["Contact: <sip:caller@127.0.0.1:%d>" % caller.port]))
            inv = recv_request(ua, "INVITE", call_id, 10)
            check(inv is not None, "B went on to the UDP binding:\n%s" % b.read_log()[-1500:])
            if answer:
                top = inv.all("Via")[0].split(",")[0]
                m = re.search(r"SIP/2\.0/UDP ([0-9.]+):(\d+)", top)
                ua.send(reply_to(inv, answer, "Busy Here"), to=(m.group(1), int(m.group(2))))
            r = recv_final(caller, call_id, 10)
            check(r is not None and r.status in allowed,
                  "UA %s, owner gone: caller got %r, expected one of %r\n%s" % (
                      answer or "silent", r, allowed, b.read_log()[-1500:]))
            print("UA %s, owner gone: caller got %d %s" % (answer or "silent", r.status, r.reason), flush=True)
        caller.close()
        ua.close()


def test_reload_switches_backend():
    with Redis() as redis, node(redis) as b, Proxy(ipv6=False) as p:
        register(p.port, "lena", "sip:lena@127.0.0.1:5997")  # memory backend
        p.config["location"] = json.loads(json.dumps(b.config["location"]))
        p.write_config()
        st, body = admin(p, "POST", "/reload")
        check(st == 200, "reload to redis: %d %s" % (st, body))
        check(poll(lambda: len(redis.hgetall("sbt:aor:sip:lena@localhost")) == 1, 5), "lena written to redis")
        check(poll(lambda: len(bindings(b, "sip:lena@localhost")) == 1, 5), "the other node sees lena")
        register(b.port, "max", "sip:max@127.0.0.1:5996")
        check(poll(lambda: len(bindings(p, "sip:max@localhost")) == 1, 5), "the reloaded node sees max")
        # A refused reload (bad redis key) changes nothing.
        p.config["location"]["redis"]["servers"] = ["nohost"]
        p.write_config()
        st, body = admin(p, "POST", "/reload")
        check(st != 200 and "location.redis.servers[0]" in body, "refused: %d %s" % (st, body))
        # And back to memory.
        p.config["location"] = {"backend": "memory"}
        p.write_config()
        st, body = admin(p, "POST", "/reload")
        check(st == 200, "reload to memory: %d %s" % (st, body))
        check(len(bindings(p, "sip:lena@localhost")) == 1, "the table is kept")
        st, h = health(p)
        check(h["status"] == "ok", "not degraded on memory: %r" % h)


def test_config_errors_name_the_key():
    p = Proxy(ipv6=False)
    sbtest.deep_update(p.config, {"location": {"backend": "redis", "redis": {
        "servers": ["127.0.0.1"], "prefix": "a*b", "command_timeout_ms": 0, "pool": 2}}})
    p.write_config()
    r = subprocess.run([sbtest.BINARY, "check", "-c", p.config_path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode()
    check(r.returncode != 0, "check refused: %s" % out)
    for key in ("location.redis.servers[0]", "location.redis.prefix", "location.redis.command_timeout_ms",
                "location.redis.pool"):
        check(key in out, "error names %s:\n%s" % (key, out))
    p.tmp.cleanup()


if __name__ == "__main__":
    sbtest.run([test_config_errors_name_the_key, test_register_on_a_call_through_b_deregister_on_b,
                test_node_killed_bindings_survive_and_reregister_on_b, test_redis_down_under_load_then_catch_up,
                test_lookup_miss_reads_through_and_times_out_with_500, test_flow_held_by_a_is_reached_through_a,
                test_mixed_aor_owner_gone_gets_the_best_answer, test_reload_switches_backend])
