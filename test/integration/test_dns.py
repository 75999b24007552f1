"""Locating SIP servers (RFC 3263) against a real DNS server: dnsmasq (Debian dnsmasq-base),
started by each test on 127.0.0.1 on a free port with naptr-record / srv-host / host-record
entries, and the proxy's resolver pointed at it (config "dns"). SIPp peers take the calls:
NAPTR → SRV → A and the NAPTR's transport; SRV priority and failover on 503, on a UDP
timeout and on TCP refused, then the dead server greylisted; a 503's Retry-After honoured;
SRV weights over 1000 calls; TTL expiry across a dnsmasq restart; NXDOMAIN (404) and its
negative caching; queries coalesced while in flight. Query counts come from dnsmasq's own
log (--log-queries). Resolver state (cache, greylist) is per worker: tests that count
queries or check the greylist across requests run one worker, or allow one per worker."""
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import sbtest
from sbtest import Proxy, UdpClient, check
from sipp import Sipp

DNSMASQ = os.environ.get("SB_DNSMASQ", "/usr/sbin/dnsmasq")
FAST_TIMERS = {"timers": {"t1_ms": 50, "t2_ms": 400, "t4_ms": 500}}

# Relay every new request to its Request-URI: the proxy locates it with RFC 3263.
RELAY_SCRIPT = """
function on_request(req)
  if req:in_dialog() then return req:relay() end
  if req.method == "INVITE" then req:record_route() end
  return req:relay()
end
"""


# ---- DNS: a query from the test, and the dnsmasq process ---------------------------------

def dns_query(port, name, qtype=1, timeout=2.0):
    """One query to 127.0.0.1:port; returns the rcode (None on timeout)."""
    tid = random.getrandbits(16)
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
    pkt = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
        return data[3] & 0x0F
    except socket.timeout:
        return None
    finally:
        s.close()


class Dnsmasq:
    """dnsmasq answering only from its config (no upstream, no /etc/hosts) for the zone
    `test`, logging every query to a file of its own."""

    def __init__(self, tmp, port=None):
        self.tmp = tmp
        self.port = port or sbtest.free_port()
        self.proc = None
        self.generation = 0
        self.log_path = None
        self.markers = 0

    def start(self, records, ttl=60):
        self.generation += 1
        conf = os.path.join(self.tmp, "dnsmasq-%d.conf" % self.generation)
        self.log_path = os.path.join(self.tmp, "dnsmasq-%d.log" % self.generation)
        with open(conf, "w") as f:
            f.write("local=/test/\n")           # names under test. are ours: NXDOMAIN if absent
            f.write("local-ttl=%d\n" % ttl)     # the TTL of every record below
            f.write("neg-ttl=%d\n" % ttl)
            f.write("host-record=ready.test,127.0.0.1\n")
            f.write(records.strip() + "\n")
        self.out = open(os.path.join(self.tmp, "dnsmasq-%d.out" % self.generation), "wb")
        self.proc = subprocess.Popen(
            [DNSMASQ, "--no-daemon", "--port=%d" % self.port, "--listen-address=127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=" + conf,
             "--log-queries", "--log-facility=" + self.log_path,
             "--pid-file=" + os.path.join(self.tmp, "dnsmasq.pid")],
            stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited (%s): %s" % (self.proc.returncode, self.output()))
            if dns_query(self.port, "ready.test", timeout=0.2) == 0:
                return self
        raise RuntimeError("dnsmasq did not answer: " + self.output())

    def output(self):
        with open(self.out.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self.out.close()

    def restart(self, records, ttl=60):
        self.stop()
        return self.start(records, ttl)

    def sync(self):
        """Every query sent before now is in the log: ask for a marker and wait to see it."""
        self.markers += 1
        name = "marker%d.test" % self.markers
        dns_query(self.port, name)
        deadline = time.time() + 5
        while time.time() < deadline:
            if "query[A] %s " % name in self.read_log():
                return
            time.sleep(0.02)
        raise RuntimeError("dnsmasq did not log " + name)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def queries(self, qtype, name):
        """How many (qtype, name) queries this dnsmasq logged."""
        self.sync()
        return len(re.findall(r"query\[%s\] %s from " % (qtype, re.escape(name)), self.read_log()))


class DelayRelay:
    """A UDP relay in front of dnsmasq that holds each query for `delay` seconds, so many
    requests arrive while the proxy's query is in flight."""

    def __init__(self, upstream_port, delay):
        self.upstream = upstream_port
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        self.sock.settimeout(0.1)
        while self.running:
            try:
                data, src = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.forward, args=(data, src), daemon=True).start()

    def forward(self, data, src):
        time.sleep(self.delay)
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.settimeout(2)
        try:
            up.sendto(data, ("127.0.0.1", self.upstream))
            answer, _ = up.recvfrom(4096)
            if self.running:
                self.sock.sendto(answer, src)
        except OSError:
            pass
        finally:
            up.close()

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


# ---- SIP peers ---------------------------------------------------------------------------

class Responder:
    """A UDP UAS in Python: answers every request 200 (with X-Responder: its name) and counts
    them. For tests that need many quick transactions, not full calls."""

    def __init__(self, name, status=200, headers=()):
        self.name = name
        self.status = status
        self.headers = list(headers)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.running = True
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        self.sock.settimeout(0.1)
        while self.running:
            try:
                data, src = self.sock.recvfrom(70000)
            except socket.timeout:
                continue
            except OSError:
                return
            r = sbtest.Response(data)
            if r.is_response or r.start.startswith("ACK "):
                continue
            self.count += 1
            keep = [(n, v) for n, v in r.headers if n.lower() in ("via", "from", "to", "call-id", "cseq")]
            lines = ["SIP/2.0 %d %s" % (self.status, "OK" if self.status == 200 else "Unavailable")]
            for n, v in keep:
                if n.lower() == "to" and ";tag=" not in v:
                    v += ";tag=resp%d" % self.port
                lines.append("%s: %s" % (n, v))
            lines += ["X-Responder: " + self.name] + self.headers + ["Content-Length: 0"]
            self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), src)

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def options_via_proxy(p, ruri, timeout=5):
    """OPTIONS `ruri` through the proxy; the final response (or None)."""
    c = UdpClient()
    c.dest = ("127.0.0.1", p.port)
    try:
        c.send(sbtest.options(ruri, c))
        return c.recv_response(timeout=timeout, skip_provisional=True)
    finally:
        c.close()


def dns_proxy(workers=1, dns_port=0, dns=None):
    cfg = dict(FAST_TIMERS)
    cfg["dns"] = {"servers": ["127.0.0.1:%d" % dns_port], "timeout_ms": 500, "tries": 2}
    if dns:
        cfg["dns"].update(dns)
    p = Proxy(workers=workers, ipv6=False, extra=cfg)
    path = os.path.join(p.tmp.name, "relay.lua")
    with open(path, "w") as f:
        f.write(RELAY_SCRIPT)
    p.config["script"] = {"path": path}
    return p


def sipp_call(p, domain, service="svc", calls=1, rate=None, timeout=60, extra=()):
    args = list(extra)
    if rate:
        args += ["-r", str(rate)]
    uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service=service, calls=calls,
               keys={"domain": domain}, extra=args).start()
    return uac.wait(timeout), uac


class Stack:
    """A temp dir and what a test started, stopped in reverse order whatever happens."""

    def __init__(self):
        self.items = []
        self.tmp = tempfile.mkdtemp(prefix="sbdns-")

    def add(self, x):
        self.items.append(x)
        return x

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for x in reversed(self.items):
            try:
                if isinstance(x, Proxy):
                    x.__exit__(None, None, None)  # kills it if still running, removes its dir
                else:
                    x.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def fail_info(p, uac=None, dns=None):
    out = ""
    if uac:
        out += "\n--- uac:\n" + uac.messages()[-2000:]
    out += "\n--- proxy:\n" + p.read_log()[-2500:]
    if dns:
        out += "\n--- dnsmasq:\n" + dns.read_log()[-1500:]
    return out


# ---- tests -------------------------------------------------------------------------------

def test_naptr_srv_a_chain_picks_the_naptr_transport():
    with Stack() as st:
        tmp = st.tmp
        tcp_port, udp_port = sbtest.free_port(), sbtest.free_port()
        dns = st.add(Dnsmasq(tmp)).start("""
naptr-record=chain.test,10,10,"s","SIP+D2T","",_sip._tcp.chain.test
naptr-record=chain.test,20,10,"s","SIP+D2U","",_sip._udp.chain.test
srv-host=_sip._tcp.chain.test,uas-tcp.chain.test,%d,10,1
srv-host=_sip._udp.chain.test,uas-udp.chain.test,%d,10,1
host-record=uas-tcp.chain.test,127.0.0.1
host-record=uas-udp.chain.test,127.0.0.1
naptr-record=udponly.test,10,10,"s","SIP+D2U","",_sip._udp.udponly.test
srv-host=_sip._udp.udponly.test,uas-udp.chain.test,%d,10,1
""" % (tcp_port, udp_port, udp_port))
        for workers in (1, 2):
            p = st.add(dns_proxy(workers=workers, dns_port=dns.port))
            p.start()
            # NAPTR order 10 says TCP: the call reaches the TCP UAS (over TCP).
            uas = st.add(Sipp("uas.xml", p.tmp.name, port=tcp_port, transport="t1"))
            uas.start()
            rc, uac = sipp_call(p, "chain.test")
            check(rc == 0 and uas.wait(30) == 0, "workers=%d: call over TCP via NAPTR/SRV/A: %d%s" % (
                workers, rc, fail_info(p, uac, dns)))
            check("SIP/2.0/TCP" in uas.messages(), "the INVITE came over TCP")
            # A domain whose NAPTR offers UDP only: the UDP UAS.
            uas_udp = st.add(Sipp("uas.xml", p.tmp.name, port=udp_port))
            uas_udp.start()
            rc, uac = sipp_call(p, "udponly.test")
            check(rc == 0 and uas_udp.wait(30) == 0, "workers=%d: call over UDP: %d%s" % (
                workers, rc, fail_info(p, uac, dns)))
            p.stop()
        check(dns.queries("NAPTR", "chain.test") >= 1, "the proxy asked for NAPTR")
        check(dns.queries("SRV", "_sip._tcp.chain.test") >= 1, "then SRV")
        check(dns.queries("SRV", "_sip._udp.chain.test") == 0, "not the SRV of the other NAPTR")
        check(dns.queries("A", "uas-tcp.chain.test") >= 1, "then A")
        check(dns.queries("AAAA", "uas-tcp.chain.test") == 0, "no AAAA without an IPv6 listener")


def test_srv_priority_and_failover():
    with Stack() as st:
        tmp = st.tmp
        ports = {k: sbtest.free_port() for k in ("ok1", "ok2", "busy1", "busy2", "dead1", "dead2",
                                                  "tcpdead1", "tcpok2")}
        records = ""
        for dom, first, second, proto in (("prio", "ok1", "ok2", "udp"), ("busy", "busy1", "busy2", "udp"),
                                          ("dead", "dead1", "dead2", "udp"), ("tcpdead", "tcpdead1", "tcpok2", "tcp")):
            records += "srv-host=_sip._%s.%s.test,primary.test,%d,10,1\n" % (proto, dom, ports[first])
            records += "srv-host=_sip._%s.%s.test,secondary.test,%d,20,1\n" % (proto, dom, ports[second])
            records += 'naptr-record=%s.test,10,10,"s","SIP+D2%s","",_sip._%s.%s.test\n' % (
                dom, "U" if proto == "udp" else "T", proto, dom)
        records += "host-record=primary.test,127.0.0.1\nhost-record=secondary.test,127.0.0.1\n"
        dns = st.add(Dnsmasq(tmp)).start(records)
        for workers in (1, 2):
            p = st.add(dns_proxy(workers=workers, dns_port=dns.port))
            p.start()
            failover_cases(st, p, dns, ports, workers)
            p.stop()


def failover_cases(st, p, dns, ports, workers):
    # 1. The primary (priority 10) answers; the secondary hears nothing.
    spy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spy.bind(("127.0.0.1", ports["ok2"]))
    spy.setblocking(False)
    primary = st.add(Sipp("uas.xml", p.tmp.name, port=ports["ok1"])).start()
    rc, uac = sipp_call(p, "prio.test")
    check(rc == 0 and primary.wait(30) == 0, "primary took the call: %d%s" % (rc, fail_info(p, uac, dns)))
    try:
        spy.recvfrom(70000)
        check(False, "the secondary got a request")
    except BlockingIOError:
        pass
    spy.close()

    # 2. The primary answers 503: the secondary completes the call.
    busy = st.add(Sipp("uas_503.xml", p.tmp.name, port=ports["busy1"])).start()
    second = st.add(Sipp("uas.xml", p.tmp.name, port=ports["busy2"])).start()
    rc, uac = sipp_call(p, "busy.test")
    check(rc == 0 and busy.wait(30) == 0 and second.wait(30) == 0,
          "503 → secondary: %d%s" % (rc, fail_info(p, uac, dns)))

    # 3. Nothing listens on the primary's UDP port: Timer B (64*T1 = 3.2 s) → secondary.
    second = st.add(Sipp("uas.xml", p.tmp.name, port=ports["dead2"])).start()
    t0 = time.time()
    rc, uac = sipp_call(p, "dead.test")
    check(rc == 0 and second.wait(30) == 0, "UDP timeout → secondary: %d%s" % (rc, fail_info(p, uac, dns)))
    check(time.time() - t0 >= 3.0, "the primary was given Timer B first")
    if workers == 1:
        # ... and is greylisted now (dns.greylist_s, 30 s; per worker, hence one worker
        # here): the next call goes to the secondary at once, without Timer B again.
        second = st.add(Sipp("uas.xml", p.tmp.name, port=ports["dead2"])).start()
        t0 = time.time()
        rc, uac = sipp_call(p, "dead.test")
        check(rc == 0 and second.wait(30) == 0, "greylisted primary skipped: %d%s" % (rc, fail_info(p, uac, dns)))
        check(time.time() - t0 < 3.0, "no Timer B this time: %.1f s" % (time.time() - t0))

    # 4. TCP: the primary refuses the connection → the secondary, over TCP.
    second = st.add(Sipp("uas.xml", p.tmp.name, port=ports["tcpok2"], transport="t1")).start()
    rc, uac = sipp_call(p, "tcpdead.test")
    check(rc == 0 and second.wait(30) == 0, "TCP refused → secondary: %d%s" % (rc, fail_info(p, uac, dns)))


def test_srv_weights_over_1000_calls():
    with Stack() as st:
        tmp = st.tmp
        heavy, light = sbtest.free_port(), sbtest.free_port()
        dns = st.add(Dnsmasq(tmp)).start("""
srv-host=_sip._udp.weights.test,heavy.test,%d,10,3
srv-host=_sip._udp.weights.test,light.test,%d,10,1
host-record=heavy.test,127.0.0.1
host-record=light.test,127.0.0.1
""" % (heavy, light))
        p = st.add(dns_proxy(workers=2, dns_port=dns.port))
        p.start()
        n = 1000
        a = st.add(Sipp("uas.xml", p.tmp.name, port=heavy, calls=n, timeout_s=120)).start()
        b = st.add(Sipp("uas.xml", p.tmp.name, port=light, calls=n, timeout_s=120)).start()
        rc, uac = sipp_call(p, "weights.test", calls=n, rate=200, timeout=120, extra=["-l", "100"])
        trace = uac.messages()
        # The callee's Contact names its port; its 180 carries it too, so count the 200s.
        answered_by = r"SIP/2\.0 200 OK\r?\n(?:[^\r\n]+\r?\n)*?Contact: <sip:callee@127\.0\.0\.1:%d;"
        to_heavy = len(re.findall(answered_by % heavy, trace))
        to_light = len(re.findall(answered_by % light, trace))
        check(rc == 0, "all %d calls completed: %d%s" % (n, rc, fail_info(p, None, dns)))
        check(to_heavy + to_light >= n, "every call answered by one of the two: %d + %d" % (to_heavy, to_light))
        # Weights 3:1 → p = 0.75; sd = sqrt(n p (1-p)) ≈ 13.7; 5 sd either side.
        share = to_heavy / float(to_heavy + to_light)
        check(682 <= to_heavy * n / (to_heavy + to_light) <= 818,
              "weight 3 took %d of %d calls (%.3f), expected 0.75 ± 5 sd" % (to_heavy, to_heavy + to_light, share))
        print("  weights 3:1 over %d calls: %d / %d" % (n, to_heavy, to_light))


def test_503_retry_after_skips_the_server_that_long():
    with Stack() as st:
        busy = st.add(Responder("busy", status=503, headers=["Retry-After: 2"]))
        backup = st.add(Responder("backup"))
        dns = st.add(Dnsmasq(st.tmp)).start("""
srv-host=_sip._udp.ra.test,busy.ra.test,%d,10,1
srv-host=_sip._udp.ra.test,backup.ra.test,%d,20,1
host-record=busy.ra.test,127.0.0.1
host-record=backup.ra.test,127.0.0.1
""" % (busy.port, backup.port))
        p = st.add(dns_proxy(workers=1, dns_port=dns.port))
        p.start()
        t0 = time.time()
        r = options_via_proxy(p, "sip:svc@ra.test")
        check(r is not None and r.status == 200 and r.header("X-Responder") == "backup",
              "503 → the next server: %r%s" % (r, fail_info(p, None, dns)))
        check(busy.count == 1, "the primary was asked first")
        # RFC 3261 §21.5.4: not asked again for the Retry-After (2 s) ...
        r = options_via_proxy(p, "sip:svc@ra.test")
        if time.time() - t0 < 1.8:
            check(busy.count == 1 and r.header("X-Responder") == "backup", "skipped while its Retry-After lasts")
        # ... and asked again afterwards (bounded wait).
        deadline = time.time() + 10
        while busy.count < 2 and time.time() < deadline:
            options_via_proxy(p, "sip:svc@ra.test")
            time.sleep(0.2)
        check(busy.count >= 2, "asked again after its Retry-After")
        check(time.time() - t0 >= 2.0, "not before")


def test_ttl_expiry_follows_a_changed_record():
    with Stack() as st:
        tmp = st.tmp
        old, new = st.add(Responder("old")), st.add(Responder("new"))
        ttl = 3
        srv = "srv-host=_sip._udp.ttl.test,host.ttl.test,%d,10,1\nhost-record=host.ttl.test,127.0.0.1\n"
        dns = st.add(Dnsmasq(tmp)).start(srv % old.port, ttl=ttl)
        p = st.add(dns_proxy(workers=1, dns_port=dns.port))
        p.start()
        t_query = time.time()
        r = options_via_proxy(p, "sip:svc@ttl.test")
        check(r is not None and r.status == 200 and r.header("X-Responder") == "old",
              "first request to the old server: %r%s" % (r, fail_info(p, None, dns)))
        # The record changes (dnsmasq restarted with a new config).
        dns.restart(srv % new.port, ttl=ttl)
        r = options_via_proxy(p, "sip:svc@ttl.test")
        if time.time() - t_query < ttl - 0.5:  # still inside the TTL: the cached answer
            check(r is not None and r.header("X-Responder") == "old", "cached until the TTL ends: %r" % r)
            check(dns.queries("SRV", "_sip._udp.ttl.test") == 0, "no new query inside the TTL")
        # After the TTL: the new server (bounded wait).
        deadline = time.time() + ttl + 10
        seen = None
        while time.time() < deadline:
            r = options_via_proxy(p, "sip:svc@ttl.test")
            seen = r.header("X-Responder") if r is not None else None
            if seen == "new":
                break
            time.sleep(0.2)
        check(seen == "new", "after the TTL the new server is used%s" % fail_info(p, None, dns))
        check(time.time() - t_query >= ttl, "not before the TTL ran out")
        check(dns.queries("SRV", "_sip._udp.ttl.test") >= 1, "asked again after the TTL")


def test_nxdomain_fails_404_and_is_cached():
    with Stack() as st:
        tmp = st.tmp
        dns = st.add(Dnsmasq(tmp)).start("host-record=other.test,127.0.0.1")
        neg = 2
        p = st.add(dns_proxy(workers=1, dns_port=dns.port, dns={"negative_ttl_s": neg}))
        p.start()
        t0 = time.time()
        for i in range(20):
            r = options_via_proxy(p, "sip:svc@nope.test")
            # RFC 3263 gives no code; NXDOMAIN is definitive, so the branch fails as 404
            # (docs/configuration.md "dns"); a timeout or SERVFAIL would be 503 → 500.
            check(r is not None and r.status == 404, "NXDOMAIN → 404: %r%s" % (r, fail_info(p, None, dns)))
        if time.time() - t0 < neg:
            check(dns.queries("NAPTR", "nope.test") == 1, "20 requests, one NAPTR query (negative cache)")
        # An INVITE from SIPp fails the same way.
        rc, uac = sipp_call(p, "nope.test", timeout=30)
        check(rc != 0 and "SIP/2.0 404" in uac.messages(), "the call fails with 404%s" % fail_info(p, uac, dns))
        # After negative_ttl_s the name is asked again.
        time.sleep(neg + 0.2)  # the negative entry's lifetime: nothing to observe but time
        before = dns.queries("NAPTR", "nope.test")
        r = options_via_proxy(p, "sip:svc@nope.test")
        check(r is not None and r.status == 404, "still 404: %r" % r)
        check(dns.queries("NAPTR", "nope.test") == before + 1, "asked again after negative_ttl_s")
        check("no such domain (NXDOMAIN)" in p.read_log(), "the log says why")


def test_concurrent_requests_to_a_new_domain_make_one_query():
    with Stack() as st:
        tmp = st.tmp
        resp = st.add(Responder("r"))
        # TTL 0: nothing is cached, so only coalescing can keep the query count down.
        dns = st.add(Dnsmasq(tmp)).start("""
naptr-record=burst.test,10,10,"s","SIP+D2U","",_sip._udp.burst.test
srv-host=_sip._udp.burst.test,host.burst.test,%d,10,1
host-record=host.burst.test,127.0.0.1
""" % resp.port, ttl=0)
        relay = st.add(DelayRelay(dns.port, delay=0.5))
        for workers in (1, 2):
            p = st.add(dns_proxy(workers=workers, dns_port=relay.port, dns={"timeout_ms": 2000}))
            p.start()
            names = (("NAPTR", "burst.test"), ("SRV", "_sip._udp.burst.test"), ("A", "host.burst.test"))
            before = {t: dns.queries(t, name) for t, name in names}
            n = 200
            c = UdpClient()
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            c.dest = ("127.0.0.1", p.port)
            # Paced (about 0.2 s in all) so no datagram is lost in a burst, yet all of them
            # arrive while the first lookup waits behind the 0.5 s relay delay.
            for i in range(n):
                c.send(sbtest.options("sip:svc%d@burst.test" % i, c))
                time.sleep(0.001)
            got = 0
            deadline = time.time() + 15
            while got < n and time.time() < deadline:
                r = c.recv_response(timeout=max(0.1, deadline - time.time()), skip_provisional=True)
                if r is None:
                    break
                if r.status == 200:
                    got += 1
            c.close()
            check(got == n, "workers=%d: all %d requests answered 200: %d%s" % (workers, n, got, fail_info(p, None, dns)))
            for t, name in names:
                q = dns.queries(t, name) - before[t]
                # One query per record type per worker (each worker has its own resolver).
                check(1 <= q <= workers, "workers=%d: %d %s queries for %s (expected at most %d)" % (
                    workers, q, t, name, workers))
            p.stop()


if __name__ == "__main__":
    if not os.path.exists(DNSMASQ):
        print("SKIP: %s not installed (Debian package dnsmasq-base)" % DNSMASQ)
        raise SystemExit(0)
    sbtest.run([test_naptr_srv_a_chain_picks_the_naptr_transport, test_srv_priority_and_failover,
                test_srv_weights_over_1000_calls, test_503_retry_after_skips_the_server_that_long,
                test_ttl_expiry_follows_a_changed_record,
                test_nxdomain_fails_404_and_is_cached, test_concurrent_requests_to_a_new_domain_make_one_query])
