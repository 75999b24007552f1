"""Issue 3: bad input. 400 with the parser's reason when a Via is usable, a counted drop
otherwise; 505 for a wrong version; 513 for an oversize message; TCP framing of split and
joined messages; nothing takes the worker down."""
import json
import socket
import sbtest
from sbtest import Proxy, UdpClient, TcpClient, options, check


def alive(p):
    c = UdpClient()
    c.dest = ("127.0.0.1", p.port)
    c.send(options("sip:127.0.0.1:%d" % p.port, c))
    r = c.recv_response(timeout=3)
    c.close()
    return r is not None and r.status == 200


def test_bad_via_param_gets_400_naming_via():
    with Proxy(workers=2, ipv6=False) as p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        msg = ("OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:%d;;branch=z9hG4bKbad1\r\n"
               "From: <sip:a@localhost>;tag=1\r\nTo: <sip:b@localhost>\r\n"
               "Call-ID: bad1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n") % c.port
        c.send(msg)
        r = c.recv_response(timeout=3)
        check(r is not None and r.status == 400, "400 expected, got %r" % r)
        check("Via" in r.reason, "reason names Via: %r" % r.reason)
        check(alive(p), "still serving")


def test_missing_call_id_gets_400_naming_it():
    with Proxy(workers=1, ipv6=False) as p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        msg = ("OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKbad2\r\n"
               "From: <sip:a@localhost>;tag=1\r\nTo: <sip:b@localhost>\r\n"
               "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n") % c.port
        c.send(msg)
        r = c.recv_response(timeout=3)
        check(r is not None and r.status == 400 and "Call-ID" in r.reason, "got %r" % r)


def test_no_via_is_dropped_and_counted():
    with Proxy(workers=1, ipv6=False) as p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        c.send("OPTIONS sip:127.0.0.1 SIP/2.0\r\nCall-ID: x\r\n\r\n")
        c.send(b"\x00\xff garbage \r\n\r\n")
        r = c.recv_response(timeout=0.5)
        check(r is None, "no answer without a Via, got %r" % r)
        check(alive(p), "still serving")
        st, body = sbtest.admin(p, "GET", "/stats")
        drops = json.loads(body)["drops"]
        check(st == 200 and drops.get("unparseable") == 2, "both drops counted: %s" % body)
        p.stop()
        check("drop" in p.read_log().lower(), "drop logged:\n" + p.read_log())


def test_bad_version_gets_505():
    with Proxy(workers=1, ipv6=False) as p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        msg = options("sip:127.0.0.1:%d" % p.port, c).replace("SIP/2.0\r\n", "SIP/7.0\r\n", 1)
        c.send(msg)
        r = c.recv_response(timeout=3)
        check(r is not None and r.status == 505, "505 expected, got %r" % r)


def test_oversize_udp_gets_513():
    with Proxy(workers=1, ipv6=False, extra={"limits": {"max_message_bytes": 4096}}) as p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        big = options("sip:127.0.0.1:%d" % p.port, c, extra_headers=["X-Pad: " + "a" * 6000])
        c.send(big)
        r = c.recv_response(timeout=3)
        check(r is not None and r.status == 513, "513 expected, got %r" % r)
        check(alive(p), "still serving")


def test_oversize_tcp_refused():
    with Proxy(workers=1, ipv6=False, extra={"limits": {"max_message_bytes": 4096}}) as p:
        t = TcpClient(p.port)
        big = options("sip:127.0.0.1:%d" % p.port, t, extra_headers=["X-Pad: " + "a" * 6000])
        t.send(big)
        r = t.recv_response(timeout=3)
        check(r is None or r.status == 513, "513 or close, got %r" % r)
        # The connection is closed after the refusal.
        t.sock.settimeout(3)
        try:
            rest = t.sock.recv(100)
        except (socket.timeout, ConnectionResetError):
            rest = b""
        check(rest == b"", "connection closed")
        t.close()
        check(alive(p), "still serving")


def test_tcp_split_and_joined():
    with Proxy(workers=2, ipv6=False) as p:
        t = TcpClient(p.port)
        m1 = options("sip:127.0.0.1:%d" % p.port, t).encode()
        # One message in three segments.
        t.send(m1[:10])
        t.send(m1[10:200])
        t.send(m1[200:])
        r = t.recv_response(timeout=3)
        check(r is not None and r.status == 200, "split message answered: %r" % r)
        # Two messages in one segment.
        m2 = options("sip:127.0.0.1:%d" % p.port, t, call_id="two-a").encode()
        m3 = options("sip:127.0.0.1:%d" % p.port, t, call_id="two-b").encode()
        t.send(m2 + m3)
        ra = t.recv_response(timeout=3)
        rb = t.recv_response(timeout=3)
        check(ra and rb and ra.status == 200 and rb.status == 200, "both answered")
        check(sorted([ra.header("Call-ID"), rb.header("Call-ID")]) == ["two-a", "two-b"], "both call-ids")
        # RFC 5626 keep-alive: CRLFCRLF ping → CRLF pong.
        t.send(b"\r\n\r\n")
        pong = t.recv_raw(2, timeout=3)
        check(pong == b"\r\n", "pong, got %r" % pong)
        t.close()


def test_tcp_missing_content_length_gets_400():
    with Proxy(workers=1, ipv6=False) as p:
        t = TcpClient(p.port)
        msg = options("sip:127.0.0.1:%d" % p.port, t).replace("Content-Length: 0\r\n", "")
        t.send(msg)
        r = t.recv_response(timeout=3)
        check(r is not None and r.status == 400 and "Content-Length" in r.reason, "got %r" % r)
        t.close()


if __name__ == "__main__":
    sbtest.run([test_bad_via_param_gets_400_naming_via, test_missing_call_id_gets_400_naming_it,
                test_no_via_is_dropped_and_counted, test_bad_version_gets_505, test_oversize_udp_gets_513,
                test_oversize_tcp_refused, test_tcp_split_and_joined, test_tcp_missing_content_length_gets_400])
