"""Issue 6: live reload. Under a bounded SIPp call load, reload 10 times (SIGHUP) alternating
two scripts that route to different callees: zero failed calls, and calls after each reload
go where the new script says. A reload with a script syntax error, a bad config value or a
change that needs a restart is rejected with file:line / key path, traffic is unaffected,
the next good reload succeeds."""
import json
import os
import signal
import time
import sbtest
from sbtest import Proxy, UdpClient, check
from sipp import Sipp

SCRIPT = """
function on_request(req)
  if req.uri.user == "which" then return req:reply(200, "%(name)s") end
  if req:in_dialog() then return req:relay() end
  req:record_route()
  return req:relay("sip:svc@127.0.0.1:%(port)d")
end
"""


def which(p):
    c = UdpClient()
    c.dest = ("127.0.0.1", p.port)
    c.send(sbtest.request("OPTIONS", "sip:which@localhost", c))
    r = c.recv_response(timeout=2, skip_provisional=True)
    c.close()
    return r.reason if r else None


def wait_for(p, name, timeout=10):
    return sbtest.poll(lambda: which(p) == name, timeout)


def proc_threads(p, read):
    """{thread name: read(its /proc/PID/task/TID directory)} for every thread of the proxy."""
    base = "/proc/%d/task" % p.proc.pid
    out = {}
    for tid in os.listdir(base):
        with open(os.path.join(base, tid, "comm")) as f:
            out[f.read().strip()] = read(os.path.join(base, tid))
    return out


def sched_policy(task):
    """The scheduling policy in a task's stat (0: SCHED_OTHER, 3: SCHED_BATCH)."""
    with open(os.path.join(task, "stat")) as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[38])  # field 41, "policy"


def cpus_allowed(task):
    """The CPUs a task may run on, as the kernel writes them in its status ("0-1")."""
    with open(os.path.join(task, "status")) as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith("Cpus_allowed_list:"))


def test_reload_under_load():
    p = Proxy(workers=2, ipv6=False)
    a_port, b_port = sbtest.free_port(), sbtest.free_port()
    script = os.path.join(p.tmp.name, "route.lua")
    sbtest.write_atomic(script, SCRIPT % {"name": "A", "port": a_port})
    p.config["script"] = {"path": script}
    with p:
        uas_a = Sipp("uas.xml", p.tmp.name, port=a_port, calls=100000).start()
        uas_b = Sipp("uas.xml", p.tmp.name, port=b_port, calls=100000).start()
        check(wait_for(p, "A"), "script A answers")
        uac = Sipp("uac.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service="svc",
                   keys={"domain": "localhost"}, calls=2400, hold_ms=200,
                   extra=["-r", "100", "-l", "400"]).start()
        names = ["B", "A"] * 5
        for name in names:
            time.sleep(1.5)
            sbtest.write_atomic(script, SCRIPT % {"name": name, "port": b_port if name == "B" else a_port})
            p.proc.send_signal(signal.SIGHUP)
            check(wait_for(p, name), "after reload, script %s is in charge" % name)
        rc = uac.wait(120)
        uas_a.stop()
        uas_b.stop()
        msgs_a, msgs_b = uas_a.messages(), uas_b.messages()
        check(rc == 0, "zero failed calls across 10 reloads (rc=%d):\n%s" % (rc, uac.messages()[-2000:]))
        ia, ib = msgs_a.count("INVITE sip:svc@"), msgs_b.count("INVITE sip:svc@")
        check(ia > 100 and ib > 100, "both callees got calls as the scripts alternated: A=%d B=%d" % (ia, ib))
        log = p.read_log()
        check(log.count("reload ok") == 10, "10 reloads logged ok:\n" + log[-2000:])


def reload_refused(p, key, value, error):
    """Reload a config whose `key` is `value`: the log must name the refusal, `error`."""
    cfg = dict(p.config)
    cfg[key] = value
    with open(p.config_path, "w") as f:
        json.dump(cfg, f)
    p.proc.send_signal(signal.SIGHUP)
    sbtest.poll(lambda: error in p.read_log(), 5)
    check(error in p.read_log(), "%s refused naming it (%s):\n%s" % (key, error, p.read_log()[-1500:]))


def test_rejected_reloads_change_nothing():
    p = Proxy(workers=2, ipv6=False)
    script = os.path.join(p.tmp.name, "route.lua")
    sbtest.write_atomic(script, SCRIPT % {"name": "A", "port": 5})
    p.config["script"] = {"path": script}
    p.config["cpu_affinity"] = "auto"
    with p:
        check(wait_for(p, "A"), "script A answers")
        # cpu_affinity "auto": worker i on the i-th CPU the process may use, the rest not pinned.
        allowed = sorted(os.sched_getaffinity(0))
        cpus = proc_threads(p, cpus_allowed)
        check(cpus.get("w0") == str(allowed[0]) and cpus.get("w1") == str(allowed[1 % len(allowed)]),
              "each worker pinned to its own CPU: %r (allowed %r)" % (cpus, allowed))
        check(cpus.get("switchboard") == cpus_allowed("/proc/self"),
              "the main thread not pinned: %r" % cpus)
        # A syntax error in the script: refused with file:line, A keeps running.
        sbtest.write_atomic(script, "function on_request(req)\n  return req:reply(200, \"broken\"\n")
        p.proc.send_signal(signal.SIGHUP)
        sbtest.poll(lambda: "reload failed" in p.read_log(), 5)
        log = p.read_log()
        check("reload failed" in log and "route.lua:3" in log, "syntax error refused with file:line:\n" + log[-1500:])
        check(which(p) == "A", "traffic unaffected: still A")
        # A bad config value: refused with its key path.
        sbtest.write_atomic(script, SCRIPT % {"name": "B", "port": 5})
        reload_refused(p, "timers", {"t1_ms": 0}, "timers.t1_ms")
        check(which(p) == "A", "still A after the refused config")
        # A key that needs a restart: refused naming it; the workers keep their scheduling.
        policies = proc_threads(p, sched_policy)
        check(policies.get("w0") == 3 and policies.get("w1") == 3 and policies.get("switchboard") == 0,
              "the workers (and only they) run under SCHED_BATCH: %r" % policies)
        reload_refused(p, "scheduling", "normal", "scheduling: changing it needs a restart")
        check(proc_threads(p, sched_policy) == policies, "the workers' scheduling unchanged")
        check(which(p) == "A", "still A after the refused restart-only change")
        reload_refused(p, "cpu_affinity", "none", "cpu_affinity: changing it needs a restart")
        check(proc_threads(p, cpus_allowed) == cpus, "the workers stay pinned: %r" % proc_threads(p, cpus_allowed))
        # The next good reload succeeds (no "fail once, fail forever").
        p.write_config()
        p.proc.send_signal(signal.SIGHUP)
        check(wait_for(p, "B"), "good reload after two failures: B in charge")


if __name__ == "__main__":
    sbtest.run([test_rejected_reloads_change_nothing, test_reload_under_load])
