"""Issue 5: calls through the stateful proxy with real SIPp peers on loopback, workers 1
and 2: register then call with Record-Route honoured by both ends, parallel fork with
CANCEL of the losing branch, CANCEL from the caller, and the §16.3 refusals."""
import json
import re
import sbtest
from sbtest import Proxy, UdpClient, check, register
from sipp import Sipp


def call(p, uas_scenario="uas.xml", transport="u1", hold_ms=100, uas_keys=None, user="bob"):
    uas = Sipp(uas_scenario, p.tmp.name, transport=transport, keys=uas_keys).start()
    t = ";transport=tcp" if transport.startswith("t") else ""
    register(p.port, user, "sip:%s@127.0.0.1:%d%s" % (user, uas.port, t))
    uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, transport=transport,
               service=user, keys={"domain": "localhost"}, hold_ms=hold_ms).start()
    rc_uac = uac.wait(60)
    rc_uas = uas.wait(30)
    return rc_uac, rc_uas, uac, uas


def test_register_then_call_udp():
    for workers in (1, 2):
        with Proxy(workers=workers, ipv6=False) as p:
            rc_uac, rc_uas, uac, uas = call(p)
            check(rc_uac == 0 and rc_uas == 0, "workers=%d: uac %d uas %d\n%s\n%s" % (
                workers, rc_uac, rc_uas, uac.messages()[-3000:], p.read_log()[-2000:]))
            trace = uas.messages()
            # The callee saw our Record-Route, and the BYE came through the proxy (loose
            # routing): it carries our Via.
            check(re.search(r"Record-Route: <sip:127\.0\.0\.1:%d;lr>" % p.port, trace), "Record-Route at callee")
            bye = trace[trace.find("BYE sip:"):]
            via = re.search(r"Via: SIP/2.0/UDP 127\.0\.0\.1:(\d+);branch=z9hG4bKsb", bye)
            check(via, "BYE came through the proxy:\n" + bye[:800])
            # Its Via names the forwarding worker's own reply port, not the listener, so the
            # 200 comes back to that worker: no message of the call changed workers.
            check(int(via.group(1)) != p.port, "Via names a reply port: " + via.group(0))
            st, body = sbtest.admin(p, "GET", "/stats")
            handoffs = json.loads(body)["counters"]["handoffs"]
            check(handoffs == 0, "workers=%d: %d messages handed between workers" % (workers, handoffs))


def test_dispatch_by_transaction_spreads_one_source():
    # config "dispatch": "transaction": the requests of one source are spread over the
    # workers by branch, and handed to their owner; the calls complete all the same.
    with Proxy(workers=2, ipv6=False, extra={"dispatch": "transaction"}) as p:
        uas = Sipp("uas.xml", p.tmp.name, calls=10).start()
        register(p.port, "bob", "sip:bob@127.0.0.1:%d" % uas.port)
        uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service="bob", calls=10,
                   keys={"domain": "localhost"}, hold_ms=50).start()
        rc_uac, rc_uas = uac.wait(60), uas.wait(30)
        check(rc_uac == 0 and rc_uas == 0, "uac %d uas %d\n%s" % (rc_uac, rc_uas, uac.messages()[-2000:]))
        st, body = sbtest.admin(p, "GET", "/stats")
        # 30 requests from one source (INVITE, ACK, BYE x 10) land on one worker; about half
        # belong to the other (no hand-off at all: odds 1 in 2^30).
        check(json.loads(body)["counters"]["handoffs"] >= 1, "requests were handed to their owner")


def test_register_then_call_tcp():
    with Proxy(workers=2, ipv6=False) as p:
        rc_uac, rc_uas, uac, uas = call(p, transport="t1")
        check(rc_uac == 0 and rc_uas == 0, "uac %d uas %d\n%s\n%s" % (rc_uac, rc_uas, uac.messages()[-3000:],
                                                                      p.read_log()[-2000:]))


def test_parallel_fork_first_200_wins_other_cancelled():
    with Proxy(workers=2, ipv6=False) as p:
        winner = Sipp("uas.xml", p.tmp.name, hold_ms=800).start()
        ringer = Sipp("uas_ring_cancel.xml", p.tmp.name).start()
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        for i, s in enumerate((winner, ringer)):
            c.send(sbtest.request("REGISTER", "sip:localhost", c,
                                  extra_headers=["Contact: <sip:bob@127.0.0.1:%d>" % s.port, "Expires: 600"],
                                  from_uri="sip:bob@localhost", to_uri="sip:bob@localhost",
                                  call_id="fork-reg-%d" % i))
            r = c.recv_response(timeout=3, skip_provisional=True)
            check(r and r.status == 200, "register fork contact %d" % i)
        uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service="bob",
                   keys={"domain": "localhost"}, hold_ms=100).start()
        rc_uac = uac.wait(60)
        rc_w = winner.wait(30)
        rc_r = ringer.wait(30)
        check(rc_uac == 0, "caller got one 200 and completed: %d\n%s" % (rc_uac, uac.messages()[-3000:]))
        check(rc_w == 0, "winner completed: %d" % rc_w)
        check(rc_r == 0, "loser got CANCEL and answered 487: %d\n%s" % (rc_r, ringer.messages()[-3000:]))
        check(uac.messages().count("SIP/2.0 200 OK") >= 1, "200 seen by caller")
        c.close()


def test_cancel_from_caller():
    with Proxy(workers=2, ipv6=False) as p:
        ringer = Sipp("uas_ring_cancel.xml", p.tmp.name).start()
        register(p.port, "carol", "sip:carol@127.0.0.1:%d" % ringer.port)
        uac = Sipp("uac_cancel.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service="carol",
                   keys={"domain": "localhost"}).start()
        rc_uac = uac.wait(60)
        rc_r = ringer.wait(30)
        check(rc_uac == 0, "caller: 200 to CANCEL and 487: %d\n%s" % (rc_uac, uac.messages()[-3000:]))
        check(rc_r == 0, "callee got the CANCEL: %d\n%s" % (rc_r, ringer.messages()[-3000:]))


def test_cancel_from_another_source_port():
    # A request belongs to the worker that read it, and SO_REUSEPORT picks the worker by
    # source: a CANCEL sent from another port than its INVITE may reach the other worker. It
    # must still find its INVITE (RFC 3261 §9.2): 200 to the CANCEL, 487 to the INVITE.
    with Proxy(workers=2, ipv6=False) as p:
        callee = UdpClient()
        register(p.port, "dave", "sip:dave@127.0.0.1:%d" % callee.port)
        for i in range(12):
            caller = UdpClient()
            caller.dest = ("127.0.0.1", p.port)
            via_branch = sbtest.branch()
            call_id = "cancel-port-%d@test" % i
            inv = sbtest.request("INVITE", "sip:dave@localhost", caller, call_id=call_id, via_branch=via_branch,
                                 extra_headers=["Contact: <sip:caller@127.0.0.1:%d>" % caller.port])
            caller.send(inv)
            got = sbtest.Response(callee.recv(timeout=5) or b"")
            check(got.start.startswith("INVITE "), "call %d: the INVITE reached the callee: %r" % (i, got))
            callee.send(reply_to(got, 180, "Ringing"), to=got_source(got))
            r = caller.recv_response(timeout=5)
            check(r is not None and r.status in (100, 180), "call %d: provisional: %r" % (i, r))
            while r is not None and r.status == 100:
                r = caller.recv_response(timeout=5)
            check(r is not None and r.status == 180, "call %d: 180 relayed: %r" % (i, r))
            # The same CANCEL (§9.1: the INVITE's top Via), from a new socket.
            other = UdpClient()
            other.dest = caller.dest
            cancel = inv.replace("INVITE sip:", "CANCEL sip:", 1).replace(" INVITE\r\n", " CANCEL\r\n")
            cancel = re.sub(r"\r\nContact: [^\r]*", "", cancel)
            other.send(cancel)
            c = callee.recv(timeout=5)
            check(c is not None and c.startswith(b"CANCEL "), "call %d: the CANCEL was relayed: %r" % (i, c))
            fwd = sbtest.Response(c)
            callee.send(reply_to(fwd, 200, "OK"), to=got_source(fwd))
            callee.send(reply_to(got, 487, "Request Terminated"), to=got_source(got))
            ack = callee.recv(timeout=5)
            check(ack is not None and ack.startswith(b"ACK "), "call %d: ACK for the 487: %r" % (i, ack))
            r = other.recv_response(timeout=5)
            check(r is not None and r.status == 200 and r.header("CSeq").endswith("CANCEL"),
                  "call %d: 200 to the CANCEL: %r\n%s" % (i, r, p.read_log()[-1500:]))
            r = caller.recv_response(timeout=5, skip_provisional=True)
            check(r is not None and r.status == 487, "call %d: 487 to the INVITE: %r" % (i, r))
            caller.close()
            other.close()
        st, body = sbtest.admin(p, "GET", "/stats")
        # Twelve new source ports: some CANCEL reached the worker without its INVITE (odds
        # of none: 1 in 4096) and was passed on.
        check(json.loads(body)["counters"]["handoffs"] >= 1, "a CANCEL went to the INVITE's worker")
        callee.close()


def got_source(msg):
    """Where a request from the proxy wants its responses: its top Via (no rport here)."""
    via = msg.all("Via")[0].split(",")[0]
    m = re.match(r"SIP/2.0/UDP ([0-9.]+):(\d+)", via.strip())
    return (m.group(1), int(m.group(2)))


def reply_to(msg, status, reason):
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    for name in ("Via", "From", "Call-ID", "CSeq"):
        for v in msg.all(name):
            lines.append("%s: %s" % (name, v))
    to = msg.header("To")
    lines.append("To: %s%s" % (to, "" if ";tag=" in to else ";tag=callee"))
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


def invite(p, ruri, extra=(), max_forwards=70, host="127.0.0.1"):
    c = UdpClient(host)
    c.dest = ("127.0.0.1", p.port)
    c.send(sbtest.request("INVITE", ruri, c, extra_headers=list(extra), max_forwards=max_forwards))
    r = c.recv_response(timeout=5, skip_provisional=True)
    c.close()
    return r


def test_refusals():
    # Only 127.0.0.1 is trusted (docs/security.md), so 127.0.0.2 stands for the internet.
    with Proxy(workers=2, ipv6=False, extra={"security": {"trusted": ["127.0.0.1"]}}) as p:
        r = invite(p, "sip:nobody@localhost")
        check(r is not None and r.status == 404, "unknown user → 404: %r" % r)
        r = invite(p, "sip:bob@localhost", max_forwards=0)
        check(r is not None and r.status == 483, "Max-Forwards 0 → 483: %r" % r)
        r = invite(p, "sip:bob@localhost", extra=["Proxy-Require: nosuchextension"])
        check(r is not None and r.status == 420 and "nosuchextension" in (r.header("Unsupported") or ""),
              "Proxy-Require → 420 with Unsupported: %r" % r)
        r = invite(p, "sip:bob@example.org", host="127.0.0.2")
        check(r is not None and r.status == 403, "foreign domain from an untrusted source → 403 (not an open relay): %r" % r)


def test_loop_detected():
    with Proxy(workers=2, ipv6=False) as p:
        # A binding that points back at the proxy itself: the request comes back once with a
        # new Request-URI (a spiral, §16.3 step 4), then again with the same one: a loop.
        register(p.port, "loop", "sip:loop@127.0.0.1:%d" % p.port, domain="127.0.0.1")
        r = invite(p, "sip:loop@127.0.0.1")
        check(r is not None and r.status == 482, "loop → 482: %r\n%s" % (r, p.read_log()[-2000:]))


if __name__ == "__main__":
    sbtest.run([test_register_then_call_udp, test_dispatch_by_transaction_spreads_one_source,
                test_register_then_call_tcp,
                test_parallel_fork_first_200_wins_other_cancelled, test_cancel_from_caller,
                test_cancel_from_another_source_port,
                test_refusals, test_loop_detected])
