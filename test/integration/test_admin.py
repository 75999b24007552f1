"""Issue 6: the admin API on the real binary. /health, /stats, /metrics (parsed as
Prometheus text; counters move with traffic), /location add/list/rm, POST /reload, and
`switchboard ctl` as its client. Bad admin input gets a 4xx and SIP keeps flowing."""
import json
import re
import subprocess
import sbtest
from sbtest import Proxy, UdpClient, admin, check


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')


def parse_prometheus(text):
    """A small strict parser: every sample belongs to a family declared by TYPE."""
    families, samples = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = kind
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("not Prometheus text: %r" % line)
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in families and base not in families:
            raise AssertionError("sample without TYPE: %r" % line)
        float(m.group(4))
        samples[name + (m.group(2) or "")] = float(m.group(4))
    return families, samples


def total(samples, prefix):
    return sum(v for k, v in samples.items() if k.startswith(prefix))


def test_health_stats_metrics_move():
    with Proxy(workers=2, ipv6=False) as p:
        st, body = admin(p, "GET", "/health")
        check(st == 200 and json.loads(body)["status"] == "ok", "health: %d %s" % (st, body))
        st, text = admin(p, "GET", "/metrics")
        check(st == 200, "metrics answered")
        fams, before = parse_prometheus(text)
        for fam in ("switchboard_requests_total", "switchboard_responses_total", "switchboard_transactions_active",
                    "switchboard_bindings", "switchboard_reloads_total", "switchboard_script_duration_seconds",
                    "switchboard_build_info", "switchboard_queue_depth"):
            check(fam in fams, "family %s declared" % fam)
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        for i in range(20):
            c.send(sbtest.request("INVITE", "sip:nobody@localhost", c))
            r = c.recv_response(timeout=3, skip_provisional=True)
            check(r and r.status == 404, "404 for unknown user")
        c.close()
        st, text = admin(p, "GET", "/metrics")
        _, after = parse_prometheus(text)
        inv = 'switchboard_requests_total{method="INVITE"}'
        check(after.get(inv, 0) - before.get(inv, 0) >= 20, "INVITE counter moved: %r" % after.get(inv))
        check(total(after, "switchboard_script_duration_seconds_count") >= 20, "script histogram counted calls")
        st, body = admin(p, "GET", "/stats")
        s = json.loads(body)
        check(st == 200 and s["workers"] == 2 and s["requests_by_method"].get("INVITE", 0) >= 20, "stats: %s" % body[:300])


def test_location_round_trip_and_bad_input():
    with Proxy(workers=1, ipv6=False) as p:
        st, body = admin(p, "POST", "/location", {"aor": "sip:desk@localhost", "contact": "sip:desk@192.0.2.9:5060"})
        check(st == 201, "static binding added: %d %s" % (st, body))
        st, body = admin(p, "GET", "/location?aor=sip:desk@localhost")
        b = json.loads(body)["bindings"]
        check(st == 200 and len(b) == 1 and b[0]["contact"] == "sip:desk@192.0.2.9:5060", "listed: %s" % body)
        st, body = admin(p, "POST", "/location", {"contact": "sip:x@192.0.2.1"})
        check(st == 400 and "aor" in json.loads(body)["error"], "missing field named: %d %s" % (st, body))
        st, body = admin(p, "GET", "/nosuchpath")
        check(st == 404 and "error" in json.loads(body), "unknown path 404 JSON")
        st, body = admin(p, "DELETE", "/location?aor=sip:desk@localhost")
        check(st == 200 and json.loads(body)["removed"] == 1, "removed: %s" % body)
        st, body = admin(p, "GET", "/location?aor=sip:desk@localhost")
        check(json.loads(body)["bindings"] == [], "gone")
        # SIP still flows after bad admin input.
        c = UdpClient()
        c.dest = ("127.0.0.1", p.port)
        c.send(sbtest.options("sip:127.0.0.1:%d" % p.port, c))
        r = c.recv_response(timeout=3)
        check(r and r.status == 200, "SIP unaffected")
        c.close()


def ctl(p, *args):
    r = subprocess.run([sbtest.BINARY, "ctl", "--admin", "127.0.0.1:%d" % p.config["admin"]["port"]] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_reload_via_http_and_ctl():
    with Proxy(workers=2, ipv6=False) as p:
        st, body = admin(p, "POST", "/reload")
        j = json.loads(body)
        check(st == 200 and j["ok"] and j["generation"] == 2, "POST /reload ok: %s" % body)
        rc, out, err = ctl(p, "reload")
        check(rc == 0 and "generation 3" in out, "ctl reload: %d %s %s" % (rc, out, err))
        p.config["timers"] = {"t1_ms": -5}
        p.write_config()
        st, body = admin(p, "POST", "/reload")
        j = json.loads(body)
        check(st == 422 and not j["ok"] and any("timers.t1_ms" in e for e in j["errors"]), "bad reload: %s" % body)
        rc, out, err = ctl(p, "reload")
        check(rc == 1 and "timers.t1_ms" in err, "ctl shows the key path: %d %s %s" % (rc, out, err))
        rc, out, err = ctl(p, "--json", "stats")
        s = json.loads(out)
        check(rc == 0 and s["reloads_ok"] == 2 and s["reloads_failed"] == 2 and s["generation"] == 3, "stats: %s" % out[:300])
        rc, out, err = ctl(p, "location", "add", "sip:bob@localhost", "sip:bob@192.0.2.1:5060")
        check(rc == 0 and "added sip:bob@localhost" in out, "ctl location add: %s %s" % (out, err))
        rc, out, err = ctl(p, "location", "list")
        check(rc == 0 and "sip:bob@192.0.2.1:5060" in out, "ctl location list: %s" % out)
        rc, out, err = ctl(p, "location", "rm", "sip:bob@localhost")
        check(rc == 0 and "removed 1" in out, "ctl location rm: %d %s %s" % (rc, out, err))
        rc, out, err = ctl(p, "location", "list", "sip:bob@localhost")
        check(rc == 0 and "no bindings" in out, "ctl location list after rm: %s" % out)


if __name__ == "__main__":
    sbtest.run([test_health_stats_metrics_move, test_location_round_trip_and_bad_input, test_reload_via_http_and_ctl])
