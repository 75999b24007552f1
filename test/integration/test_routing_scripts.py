"""Issue 5: routing scripts driving the proxy with real SIPp peers: serial failover when the
first target answers 503, stays silent (Timer B) or refuses TCP; on_failure rerouting a 486
to a third UA; a script error answers 500 and the worker keeps serving."""
import os
import socket
import sbtest
from sbtest import Proxy, UdpClient, check
from sipp import Sipp

FAST_TIMERS = {"timers": {"t1_ms": 50, "t2_ms": 400, "t4_ms": 500}}


def proxy_with_script(source, workers=2):
    p = Proxy(workers=workers, ipv6=False, extra=FAST_TIMERS)
    path = os.path.join(p.tmp.name, "route.lua")
    with open(path, "w") as f:
        f.write(source)
    p.config["script"] = {"path": path}
    return p


def closed_port(kind=socket.SOCK_DGRAM):
    """A loopback port with nothing listening on it."""
    return sbtest.free_port()


def run_call(p, uas_list, service="svc", hold_ms=100):
    uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service=service,
               keys={"domain": "localhost"}, hold_ms=hold_ms).start()
    rc = uac.wait(60)
    rcs = [u.wait(30) for u in uas_list]
    return rc, rcs, uac


SERIAL = """
function on_request(req)
  if req:in_dialog() then return req:relay() end
  req:record_route()
  return req:relay({%s}, {mode = "serial"})
end
"""


def test_serial_failover_on_503():
    first = None
    p = None
    try:
        first_port, second_port = sbtest.free_port(), sbtest.free_port()
        p = proxy_with_script(SERIAL % ('"sip:svc@127.0.0.1:%d", "sip:svc@127.0.0.1:%d"' % (first_port, second_port)))
        with p:
            first = Sipp("uas_503.xml", p.tmp.name, port=first_port).start()
            second = Sipp("uas.xml", p.tmp.name, port=second_port).start()
            rc, rcs, uac = run_call(p, [first, second])
            check(rc == 0, "call completed on the second target: %d\n%s\n%s" % (rc, uac.messages()[-2500:], p.read_log()[-1500:]))
            check(rcs == [0, 0], "first got INVITE+ACK (503), second took the call: %r" % rcs)
    finally:
        if first:
            first.stop()


def test_serial_failover_on_timeout():
    silent = closed_port()
    second_port = sbtest.free_port()
    p = proxy_with_script(SERIAL % ('"sip:svc@127.0.0.1:%d", "sip:svc@127.0.0.1:%d"' % (silent, second_port)))
    with p:
        # Something bound but never answering: Timer B (64*T1 = 3.2 s here) ends branch one.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", silent))
        second = Sipp("uas.xml", p.tmp.name, port=second_port).start()
        rc, rcs, uac = run_call(p, [second])
        sink.close()
        check(rc == 0 and rcs == [0], "call completed on the second target after Timer B: %d %r\n%s" % (
            rc, rcs, p.read_log()[-1500:]))


def test_serial_failover_on_tcp_refused():
    refused = closed_port()
    second_port = sbtest.free_port()
    p = proxy_with_script(SERIAL % ('"sip:svc@127.0.0.1:%d;transport=tcp", "sip:svc@127.0.0.1:%d"' % (refused, second_port)))
    with p:
        second = Sipp("uas.xml", p.tmp.name, port=second_port).start()
        rc, rcs, uac = run_call(p, [second])
        check(rc == 0 and rcs == [0], "TCP refused → second target: %d %r\n%s" % (rc, rcs, p.read_log()[-1500:]))


ON_FAILURE = """
function on_request(req)
  if req:in_dialog() then return req:relay() end
  req:record_route()
  return req:relay("sip:svc@127.0.0.1:%d")
end

function on_failure(req, best)
  if best.status == 486 then
    return req:relay("sip:voicemail@127.0.0.1:%d")
  end
end
"""


def test_on_failure_reroutes_busy():
    busy_port, vm_port = sbtest.free_port(), sbtest.free_port()
    p = proxy_with_script(ON_FAILURE % (busy_port, vm_port))
    with p:
        busy = Sipp("uas_486.xml", p.tmp.name, port=busy_port).start()
        vm = Sipp("uas.xml", p.tmp.name, port=vm_port).start()
        rc, rcs, uac = run_call(p, [busy, vm])
        check(rc == 0 and rcs == [0, 0], "486 rerouted by on_failure to the third UA: %d %r\n%s" % (
            rc, rcs, p.read_log()[-1500:]))
        check("sip:voicemail@127.0.0.1" in vm.messages(), "the voicemail UA got the INVITE")


ERRORS = """
function on_request(req)
  if req.uri.user == "boom" then
    error("kaboom")
  end
  return req:reply(404, "Nobody Here")
end
"""


def test_script_error_gives_500_and_worker_survives():
    p = proxy_with_script(ERRORS, workers=1)
    with p:
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        for i in range(3):
            c.send(sbtest.request("INVITE", "sip:boom@localhost", c))
            r = c.recv_response(timeout=3, skip_provisional=True)
            check(r is not None and r.status == 500, "script error → 500: %r" % r)
            c.send(sbtest.request("INVITE", "sip:someone@localhost", c))
            r = c.recv_response(timeout=3, skip_provisional=True)
            check(r is not None and r.status == 404 and r.reason == "Nobody Here", "next call served: %r" % r)
        c.close()
        p.stop()
        log = p.read_log()
        check("kaboom" in log and "route.lua:4" in log, "the log names the script file:line:\n" + log[-1500:])


if __name__ == "__main__":
    sbtest.run([test_serial_failover_on_503, test_serial_failover_on_timeout, test_serial_failover_on_tcp_refused,
                test_on_failure_reroutes_busy, test_script_error_gives_500_and_worker_survives])
