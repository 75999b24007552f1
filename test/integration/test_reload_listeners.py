"""Issue 6: live reload of the listeners. The proxy (workers 2) listens on TCP A and B (and
UDP A for the readiness probe); a call is set up over a TCP connection to B (SIPp -t t1
caller, SIPp TCP callee registered through the proxy) and held. A reload (SIGHUP) to TCP A
and C, without B: C answers OPTIONS over TCP, a new connect to B is refused, and the call in
progress over the old connection to B completes (ACK before, BYE/200 after the reload)."""
import json
import signal
import socket
import sbtest
from sbtest import Proxy, TcpClient, check, register, wait_until
from sipp import Sipp


def listen(*entries):
    return [{"transport": t, "address": "127.0.0.1", "port": port} for t, port in entries]


def acks_seen(p):
    _, body = sbtest.admin(p, "GET", "/stats")
    return json.loads(body)["requests_by_method"].get("ACK", 0)


def test_reload_adds_and_removes_tcp_listeners():
    p = Proxy(workers=2, ipv6=False)
    a, b, c = p.port, sbtest.free_port(), sbtest.free_port()
    # TCP A first: the proxy's Record-Route for TCP names it, so the dialog's route set
    # survives B going away; the call's own connection to B is what must drain.
    p.config["listen"] = listen(("udp", a), ("tcp", a), ("tcp", b))
    uas = uac = None
    with p:
        try:
            uas = Sipp("uas.xml", p.tmp.name, transport="t1", timeout_s=30).start()
            register(a, "bob", "sip:bob@127.0.0.1:%d;transport=tcp" % uas.port)
            uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % b, transport="t1", service="bob",
                       keys={"domain": "localhost"}, hold_ms=4000, timeout_s=30).start()
            # The call is up (its ACK went through) before the reload.
            wait_until(lambda: acks_seen(p) >= 1, 10, "the call's ACK:\n" + p.read_log()[-2000:])
            oks = p.read_log().count("reload ok")

            p.config["listen"] = listen(("udp", a), ("tcp", a), ("tcp", c))
            p.write_config()
            p.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: p.read_log().count("reload ok") > oks or "reload failed" in p.read_log(), 10,
                       "the reload:\n" + p.read_log()[-2000:])
            log = p.read_log()
            check(log.count("reload ok") > oks, "reload ok:\n" + log[-2000:])
            check("listening on TCP 127.0.0.1:%d" % c in log, "opened C logged:\n" + log[-2000:])
            check("stopped listening on TCP 127.0.0.1:%d" % b in log, "closed B logged:\n" + log[-2000:])

            # C answers OPTIONS over TCP.
            t = TcpClient(c)
            t.send(sbtest.options("sip:127.0.0.1:%d;transport=tcp" % c, t))
            r = t.recv_response(timeout=3, skip_provisional=True)
            t.close()
            check(r is not None and r.is_response, "OPTIONS over TCP to C answered: %r" % r)

            # B refuses new connections.
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(3)
            try:
                s.connect(("127.0.0.1", b))
                refused = False
            except ConnectionRefusedError:
                refused = True
            finally:
                s.close()
            check(refused, "a new TCP connect to B is refused")
            check(uac.proc.poll() is None, "the call was still held during the reload")

            # The call held over the old connection to B completes: BYE and its 200.
            rc_uac = uac.wait(30)
            rc_uas = uas.wait(30)
            check(rc_uac == 0 and rc_uas == 0, "call completed: uac %d uas %d\n%s\n%s" % (
                rc_uac, rc_uas, uac.messages()[-3000:], p.read_log()[-2000:]))
            trace = uas.messages()
            check("BYE sip:" in trace, "the callee got the BYE:\n" + trace[-2000:])
        finally:
            for s in (uac, uas):
                if s:
                    s.stop()


def options_over_tcp(port):
    t = TcpClient(port)
    try:
        t.send(sbtest.options("sip:127.0.0.1:%d;transport=tcp" % port, t))
        return t.recv_response(timeout=3, skip_provisional=True)
    finally:
        t.close()


def test_reload_with_a_taken_port_changes_nothing():
    p = Proxy(workers=2, ipv6=False)
    a, b = p.port, sbtest.free_port()
    p.config["listen"] = listen(("udp", a), ("tcp", a), ("tcp", b))
    with p:
        # Another socket (no SO_REUSEPORT) holds port D.
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        d = holder.getsockname()[1]
        try:
            # Would remove B and add D: refused as a whole, B keeps accepting.
            p.config["listen"] = listen(("udp", a), ("tcp", a), ("tcp", d))
            p.write_config()
            p.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload failed" in p.read_log(), 10, "the refused reload:\n" + p.read_log()[-2000:])
            log = p.read_log()
            check("127.0.0.1:%d" % d in log and "in use" in log, "refusal names the address:\n" + log[-2000:])
            check("stopped listening" not in log, "nothing closed:\n" + log[-2000:])
            r = options_over_tcp(b)
            check(r is not None and r.is_response, "B still answers: %r" % r)
        finally:
            holder.close()
        # The same reload succeeds once the port is free.
        p.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload ok" in p.read_log(), 10, "the good reload:\n" + p.read_log()[-2000:])
        r = options_over_tcp(d)
        check(r is not None and r.is_response, "D answers after the good reload: %r" % r)


if __name__ == "__main__":
    sbtest.run([test_reload_adds_and_removes_tcp_listeners, test_reload_with_a_taken_port_changes_nothing])
