"""Every RFC 4475 / RFC 5118 torture message sent over UDP to the real proxy, judged by
shared/conformance/rfc4475/cases.json ("accept" set for every case; the RFC's preferred
"strict" outcome for the cases listed in STRICT). After each case a liveness probe must
be answered."""
import json
import os
import re
import socket
import sbtest
from sbtest import Proxy, UdpClient, options, check

CONF = os.path.join(sbtest.SOURCE_DIR, "..", "shared", "conformance", "rfc4475")

# Cases where we hold ourselves to the RFC's preferred answer.
STRICT = {"badinv01", "clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart",
          "trws", "escruri", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02", "insuf",
          "unkscm", "novelsc", "bext01", "multi01", "mcl01", "zeromf", "ipv6-bad"}


def rewrite_via(data, host, port):
    """Replace the sent-by of the topmost Via value with our socket address."""
    m = re.search(rb"(?im)^(via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*[0-9.]+[ \t]*/[ \t]*[A-Za-z]+[ \t]+", data)
    if not m:
        return data
    start = m.end()
    end = start
    if data[start:start + 1] == b"[":
        end = data.index(b"]", start) + 1
    while end < len(data) and data[end:end + 1] not in (b";", b",", b"\r", b"\n", b" ", b"\t"):
        end += 1
    return data[:start] + ("%s:%d" % (host, port)).encode() + data[end:]


def matches(code, patterns):
    pos = [p for p in patterns if not p.startswith("!")]
    neg = [p[1:] for p in patterns if p.startswith("!")]
    s = str(code)
    def m(p):
        return p == s or (p.endswith("xx") and s[0] == p[0])
    return any(m(p) for p in pos) and not any(m(p) for p in neg)


def evaluate(outcome, rule):
    codes = rule.get("codes", [])
    neg = [p for p in codes if p.startswith("!")]
    for c in outcome["codes"]:
        if neg and not matches(c, ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"] + neg):
            return False
    finals = [c for c in outcome["codes"] if c >= 200]
    if finals:
        return matches(finals[0], codes)
    if outcome["codes"]:
        return "1xx" in codes
    if outcome["request"]:
        return bool(rule.get("forwarded_request"))
    return bool(rule.get("silence"))


def send_case(p, case):
    with open(os.path.join(CONF, case["file"]), "rb") as f:
        data = f.read()
    c = UdpClient()
    if case.get("via_rewrite"):
        data = rewrite_via(data, "127.0.0.1", c.port)
    c.sock.sendto(data, ("127.0.0.1", p.port))
    outcome = {"codes": [], "request": False, "reasons": []}
    while True:
        r = c.recv_response(timeout=1.0 if not outcome["codes"] else 0.5)
        if r is None:
            break
        if r.is_response:
            outcome["codes"].append(r.status)
            outcome["reasons"].append(r.reason)
            if r.status >= 200:
                break
        else:
            outcome["request"] = True
            break
    c.close()
    return outcome


def probe(p):
    c = UdpClient()
    c.dest = ("127.0.0.1", p.port)
    c.send(options("sip:127.0.0.1:%d" % p.port, c))
    r = c.recv_response(timeout=3)
    c.close()
    return r is not None


def test_torture_messages():
    with open(os.path.join(CONF, "cases.json")) as f:
        cases = json.load(f)["cases"]
    failures = []
    strict_ok = 0
    with Proxy(workers=2, ipv6=False, extra={"domains": ["localhost", "127.0.0.1", "example.com"]}) as p:
        for case in cases:
            out = send_case(p, case)
            ok = evaluate(out, case["accept"])
            strict = evaluate(out, case["strict"])
            if case["name"] in STRICT and not strict:
                ok = False
            strict_ok += strict
            print("%-30s codes=%s reasons=%s accept=%s strict=%s" % (
                case["name"], out["codes"], out["reasons"], ok, strict), flush=True)
            if not ok:
                failures.append(case["name"])
            if not probe(p):
                failures.append(case["name"] + " (liveness)")
                break
    print("strict passes: %d/%d" % (strict_ok, len(cases)))
    check(not failures, "failed cases: %s" % failures)


if __name__ == "__main__":
    sbtest.run([test_torture_messages])
