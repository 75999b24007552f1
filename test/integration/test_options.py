"""Issue 3: the binary runs. OPTIONS to the proxy itself gets 200 on all four listeners
(UDP/TCP x IPv4/IPv6), with workers 1 and 2; SIGTERM exits 0."""
import sbtest
from sbtest import Proxy, UdpClient, TcpClient, options, check


def ask(client, host, port):
    client.dest = (host, port)
    ruri = "sip:%s:%d" % ("[%s]" % host if ":" in host else host, port)
    client.send(options(ruri, client))
    return client.recv_response(timeout=3, to=(host, port))


def run_all_listeners(workers):
    with Proxy(workers=workers) as p:
        for host in ("127.0.0.1", "::1"):
            u = UdpClient(host)
            r = ask(u, host, p.port)
            u.close()
            check(r is not None and r.status == 200, "UDP %s: %r" % (host, r))
            check("OPTIONS" in (r.header("Allow") or ""), "Allow lists OPTIONS: %r" % r.headers)
            check(r.header("Supported") is not None, "Supported present")
            check(r.header("Accept") is not None, "Accept present")
            check(r.header("To") and "tag=" in r.header("To"), "To tag added")
            t = TcpClient(p.port, host)
            r = ask(t, host, p.port)
            t.close()
            check(r is not None and r.status == 200, "TCP %s: %r" % (host, r))
        rc = p.stop()
        check(rc == 0, "SIGTERM exits 0, got %r" % rc)


def test_options_workers_1():
    run_all_listeners(1)


def test_options_workers_2():
    run_all_listeners(2)


def test_many_options_spread_over_workers():
    """With 2 workers, many OPTIONS from many sources all get their 200 (hand-off works)."""
    with Proxy(workers=2, ipv6=False) as p:
        clients = [UdpClient() for _ in range(20)]
        ok = 0
        for c in clients:
            c.dest = ("127.0.0.1", p.port)
            for _ in range(5):
                c.send(options("sip:127.0.0.1:%d" % p.port, c))
        for c in clients:
            for _ in range(5):
                r = c.recv_response(timeout=3)
                if r is not None and r.status == 200:
                    ok += 1
            c.close()
        check(ok == 100, "100 OPTIONS answered, got %d" % ok)
        check(p.stop() == 0, "clean exit")


def test_retransmission_absorbed():
    """The same OPTIONS sent twice is one transaction: the 200 is re-sent, same To tag."""
    with Proxy(workers=1, ipv6=False) as p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        msg = options("sip:127.0.0.1:%d" % p.port, c)
        c.send(msg)
        r1 = c.recv_response(timeout=3)
        c.send(msg)
        r2 = c.recv_response(timeout=3)
        check(r1 and r2 and r1.status == 200 and r2.status == 200, "both answered")
        check(r1.header("To") == r2.header("To"), "same response retransmitted: %s vs %s" % (r1.header("To"), r2.header("To")))
        c.close()


def test_other_requests_get_clear_answer():
    """Until the proxy core lands: a request for a user gets a clear 404/501, never silence."""
    with Proxy(workers=1, ipv6=False) as p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        c.send(sbtest.request("MESSAGE", "sip:bob@127.0.0.1:%d" % p.port, c, body="hi"))
        r = c.recv_response(timeout=3, skip_provisional=True)
        check(r is not None and r.status in (404, 480, 501), "clear answer, got %r" % r)
        c.close()


if __name__ == "__main__":
    sbtest.run([test_options_workers_1, test_options_workers_2, test_many_options_spread_over_workers,
                test_retransmission_absorbed, test_other_requests_get_clear_answer])
