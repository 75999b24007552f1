"""The offline commands: `switchboard check` validates config and script with the running
proxy's code (errors name the key path or file:line); `switchboard route-test` runs the
script on a message and prints the decision."""
import json
import os
import subprocess
import tempfile
import sbtest
from sbtest import check

INVITE = ("INVITE sip:bob@localhost SIP/2.0\n"
          "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcli1\n"
          "From: <sip:alice@localhost>;tag=1\nTo: <sip:bob@localhost>\n"
          "Call-ID: cli-1\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n")


def sb(*args):
    r = subprocess.run([sbtest.BINARY] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_check_shipped_config():
    rc, out, err = sb("check", "-c", os.path.join(sbtest.SOURCE_DIR, "etc", "switchboard.json"))
    check(rc == 0 and "ok" in out, "shipped config valid: %d %s %s" % (rc, out, err))


def test_check_reports_key_path_and_script_line():
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "c.json")
        with open(cfg, "w") as f:
            json.dump({"listen": [{"transport": "udp", "address": "127.0.0.1", "port": 99999}]}, f)
        rc, out, err = sb("check", "-c", cfg)
        check(rc == 1 and "listen[0].port" in err, "bad port named: %d %s" % (rc, err))
        script = os.path.join(d, "bad.lua")
        with open(script, "w") as f:
            f.write("function on_request(req)\n  return req:reply(200\nend\n")
        with open(cfg, "w") as f:
            json.dump({"script": {"path": script}}, f)
        rc, out, err = sb("check", "-c", cfg)
        check(rc == 1 and "bad.lua:3" in err, "script syntax error with file:line: %d %s" % (rc, err))
        # A CPU this process may not use: `check` and `run` both refuse, naming the key.
        cpu = max(os.sched_getaffinity(0)) + 1
        with open(cfg, "w") as f:
            json.dump({"cpu_affinity": [cpu], "location": {"backend": "memory"},
                       "script": {"path": os.path.join(sbtest.SOURCE_DIR, "scripts", "default.lua")}}, f)
        want = "cpu_affinity[0]: CPU %d is not one this process may use" % cpu
        rc, out, err = sb("check", "-c", cfg)
        check(rc == 1 and want in err, "unusable CPU named by check: %d %s" % (rc, err))
        rc, out, err = sb("run", "-c", cfg)
        check(rc == 1 and want in err, "unusable CPU refused by run: %d %s" % (rc, err))


def test_route_test_prints_decision():
    with tempfile.TemporaryDirectory() as d:
        msg = os.path.join(d, "invite.sip")
        with open(msg, "w") as f:
            f.write(INVITE)
        cfg = os.path.join(sbtest.SOURCE_DIR, "etc", "switchboard.json")
        rc, out, err = sb("route-test", "-c", cfg, "--message", msg)
        check(rc == 0 and "reply 404" in out, "unregistered → 404: %s %s" % (out, err))
        rc, out, err = sb("route-test", "-c", cfg, "--message", msg,
                          "--binding", "sip:bob@localhost=sip:bob@192.0.2.7:5062")
        check(rc == 0 and "relay" in out and "sip:bob@192.0.2.7:5062" in out and "record-route" in out,
              "registered → relay to the contact: %s %s" % (out, err))
        rc, out, err = sb("route-test", "-c", cfg, "--message", msg, "--source", "127.0.0.1:70000")
        check(rc == 2 and "--source" in err, "port out of range refused: %d %s %s" % (rc, out, err))
        script = os.path.join(d, "err.lua")
        with open(script, "w") as f:
            f.write("function on_request(req)\n  local t = nil\n  return t.x\nend\n")
        bad = os.path.join(d, "c.json")
        with open(bad, "w") as f:
            json.dump({"script": {"path": script}}, f)
        rc, out, err = sb("route-test", "-c", bad, "--message", msg)
        check(rc == 1 and "err.lua:3" in (out + err), "script error → non-zero with file:line: %d %s %s" % (rc, out, err))


if __name__ == "__main__":
    sbtest.run([test_check_shipped_config, test_check_reports_key_path_and_script_line, test_route_test_prints_decision])
