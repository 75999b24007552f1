"""Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760) with the real binary and a script
calling auth.verify / auth.challenge: REGISTER without credentials → 401 with SHA-256 and
MD5 challenges; good credentials (computed here, sbtest.digest_credentials) → 200; a wrong password → a
new 401 (RFC 3261 §22.2/§22.3: the UA may ask its user again; 403 is kept for an
authenticated user registering an AOR it does not own); a replayed nonce-count → refused;
an expired nonce → stale=true; an INVITE → 407, then with credentials relayed without them."""
import json
import os
import re
import time
import sbtest
from sbtest import Proxy, UdpClient, check
from sipp import Sipp

REALM = "sbtest"
PASSWORD = "s3cret"

SCRIPT = """
function on_request(req)
  if req.method == "OPTIONS" then return req:reply(200) end
  if req:in_dialog() then return req:relay() end
  local user, why = auth.verify(req)
  if not user then
    log.info("auth: ", why)
    return auth.challenge(req)
  end
  if req.method == "REGISTER" then return registrar.save(req) end
  return req:relay(req:header("X-Target"))
end
"""


H = sbtest.digest_hash


def ha1(alg, user):
    return H(alg, "%s:%s:%s" % (user, REALM, PASSWORD))


def make_proxy(ttl=300):
    # Two workers: the nonce-count table is shared by them, so a replay is refused whichever
    # worker its new branch lands on.
    p = Proxy(workers=2, ipv6=False)
    users = {"realm": REALM, "users": {
        "alice": {"ha1_sha256": ha1("SHA-256", "alice"), "ha1_md5": ha1("MD5", "alice"),
                  "aors": ["sip:alice@localhost"]}}}
    with open(os.path.join(p.tmp.name, "users.json"), "w") as f:
        json.dump(users, f)
    script = os.path.join(p.tmp.name, "auth.lua")
    with open(script, "w") as f:
        f.write(SCRIPT)
    p.config["script"] = {"path": script}
    p.config["auth"] = {"users_file": "users.json", "nonce_ttl_s": ttl}
    return p


def params(challenge):
    return dict((k, v1 or v2) for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', challenge))


def credentials(method, uri, alg, nonce, password=PASSWORD, nc=1, user="alice"):
    return sbtest.digest_credentials(method, uri, nonce, REALM, password, alg=alg, user=user, nc=nc)


def send(c, port, method, ruri, extra=(), to_uri=None, cseq=1, call_id=None):
    c.dest = ("127.0.0.1", port)
    c.send(sbtest.request(method, ruri, c, extra_headers=list(extra), cseq=cseq, call_id=call_id,
                          from_uri="sip:alice@localhost", to_uri=to_uri or "sip:alice@localhost"))
    return c.recv_response(timeout=3, skip_provisional=True)


def register(c, port, extra=(), to_uri=None, cseq=1):
    return send(c, port, "REGISTER", "sip:localhost", ["Contact: <sip:alice@127.0.0.1:%d>" % c.port] + list(extra),
                to_uri=to_uri, cseq=cseq, call_id="reg-%d@test" % c.port)


def challenge_of(r, header, alg):
    for v in r.all(header):
        ps = params(v)
        if ps.get("algorithm") == alg:
            return ps
    return None


def test_register_challenge_and_credentials():
    p = make_proxy()
    with p:
        c = UdpClient()
        r = register(c, p.port)
        check(r is not None and r.status == 401, "no credentials → 401: %r" % r)
        algs = [params(v).get("algorithm") for v in r.all("WWW-Authenticate")]
        check(algs == ["SHA-256", "MD5"], "one challenge per algorithm, SHA-256 first: %r" % algs)
        for alg in ("SHA-256", "MD5"):
            ch = challenge_of(r, "WWW-Authenticate", alg)
            check(ch["realm"] == REALM and ch["qop"] == "auth", "challenge: %r" % ch)
        cseq = 2
        for alg in ("SHA-256", "MD5"):
            ch = challenge_of(r, "WWW-Authenticate", alg)
            ok = register(c, p.port, ["Authorization: " + credentials("REGISTER", "sip:localhost", alg, ch["nonce"], nc=1 if alg == "SHA-256" else 2)],
                          cseq=cseq)
            cseq += 1
            check(ok is not None and ok.status == 200, "good %s credentials → 200: %r\n%s" % (alg, ok, p.read_log()[-1500:]))
        # Wrong password: a new challenge, not stale.
        ch = challenge_of(r, "WWW-Authenticate", "SHA-256")
        bad = register(c, p.port, ["Authorization: " + credentials("REGISTER", "sip:localhost", "SHA-256", ch["nonce"],
                                                                  password="wrong", nc=3)], cseq=cseq)
        cseq += 1
        check(bad is not None and bad.status == 401, "wrong password → 401: %r" % bad)
        check("stale=true" not in " ".join(bad.all("WWW-Authenticate")), "wrong password is not stale")
        # Replayed nonce-count: refused with a new challenge, on every worker (each replay has a
        # new branch, so the two workers share them).
        for i in range(8):
            replay = register(c, p.port, ["Authorization: " + credentials("REGISTER", "sip:localhost", "SHA-256", ch["nonce"], nc=1)],
                              cseq=cseq)
            cseq += 1
            check(replay is not None and replay.status == 401, "replay %d of nc=1 → 401: %r" % (i, replay))
        # Authenticated, but the AOR is not alice's: 403.
        other = register(c, p.port, ["Authorization: " + credentials("REGISTER", "sip:localhost", "SHA-256", ch["nonce"], nc=4)],
                         to_uri="sip:bob@localhost", cseq=cseq)
        check(other is not None and other.status == 403, "foreign AOR → 403: %r" % other)
        log = p.read_log()
        check("wrong password" in log and "replayed nonce-count" in log, "reasons logged:\n" + log[-1500:])


def test_expired_nonce_is_stale():
    p = make_proxy(ttl=1)
    with p:
        c = UdpClient()
        r = register(c, p.port)
        ch = challenge_of(r, "WWW-Authenticate", "SHA-256")
        time.sleep(1.3)  # the nonce must age past nonce_ttl_s: nothing to observe instead
        r2 = register(c, p.port, ["Authorization: " + credentials("REGISTER", "sip:localhost", "SHA-256", ch["nonce"])], cseq=2)
        check(r2 is not None and r2.status == 401, "expired nonce → 401: %r" % r2)
        check(all("stale=true" in v for v in r2.all("WWW-Authenticate")), "stale=true: %r" % r2.all("WWW-Authenticate"))
        ch2 = challenge_of(r2, "WWW-Authenticate", "SHA-256")
        r3 = register(c, p.port, ["Authorization: " + credentials("REGISTER", "sip:localhost", "SHA-256", ch2["nonce"])], cseq=3)
        check(r3 is not None and r3.status == 200, "fresh nonce → 200: %r" % r3)


def test_invite_407_then_relayed_without_credentials():
    p = make_proxy()
    with p:
        uas = UdpClient()
        c = UdpClient()
        target = "X-Target: sip:bob@127.0.0.1:%d" % uas.port
        r = send(c, p.port, "INVITE", "sip:bob@localhost", [target], to_uri="sip:bob@localhost", call_id="inv1@test")
        check(r is not None and r.status == 407, "INVITE without credentials → 407: %r" % r)
        check(not r.all("WWW-Authenticate"), "407 carries Proxy-Authenticate only")
        ch = challenge_of(r, "Proxy-Authenticate", "SHA-256")
        check(ch is not None, "SHA-256 challenge: %r" % r.all("Proxy-Authenticate"))
        upstream = 'Proxy-Authorization: Digest username="x", realm="upstream.example", nonce="n", uri="sip:bob@localhost", response="00"'
        c.dest = ("127.0.0.1", p.port)
        c.send(sbtest.request("INVITE", "sip:bob@localhost", c, call_id="inv1@test", cseq=2, to_uri="sip:bob@localhost",
                              extra_headers=[target, "Proxy-Authorization: " + credentials("INVITE", "sip:bob@localhost", "SHA-256", ch["nonce"]),
                                             upstream]))
        data = uas.recv(timeout=3)
        check(data is not None, "the INVITE was relayed:\n" + p.read_log()[-1500:])
        fwd = sbtest.Response(data)
        pa = fwd.all("Proxy-Authorization")
        check(len(pa) == 1 and "upstream.example" in pa[0], "our credentials removed, others kept: %r" % pa)
        # Answer 486 so the transaction ends cleanly.
        lines = data.decode().split("\r\n\r\n")[0].split("\r\n")
        keep = [l for l in lines[1:] if re.match(r"(?i)(via|from|to|call-id|cseq):", l)]
        uas.send("SIP/2.0 486 Busy Here\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n",
                 to=("127.0.0.1", p.port))
        final = c.recv_response(timeout=3, skip_provisional=True)
        check(final is not None and final.status == 486, "486 comes back: %r" % final)


def test_sipp_caller_authenticates_with_407():
    # A real UA's digest (SIPp -au/-ap, MD5): INVITE → 407, ACK, INVITE with credentials →
    # relayed to a SIPp callee, answered, ACK and BYE through the proxy.
    p = make_proxy()
    p.config["auth"]["algorithms"] = ["MD5"]
    with p:
        uas = Sipp("uas.xml", p.tmp.name).start()
        uac = Sipp("uac_auth.xml", p.tmp.name, remote="127.0.0.1:%d" % p.port, service="alice",
                   keys={"domain": "localhost", "target": "sip:bob@127.0.0.1:%d" % uas.port},
                   extra=["-au", "alice", "-ap", PASSWORD]).start()
        rc = uac.wait(timeout=30)
        uas_rc = uas.wait(timeout=10)
        check(rc == 0, "SIPp call with 407 authentication: rc %d\n%s\n%s" % (rc, uac.messages()[-3000:], p.read_log()[-1500:]))
        check(uas_rc == 0, "callee got the call: rc %d\n%s" % (uas_rc, uas.messages()[-2000:]))
        fwd = uas.messages()
        check("INVITE sip:" in fwd and "Proxy-Authorization" not in fwd.split("SIP/2.0 200")[0],
              "the relayed INVITE carries no credentials of ours")


def test_bad_users_file_refuses_start():
    p = make_proxy()
    with open(os.path.join(p.tmp.name, "users.json"), "w") as f:
        f.write('{"realm": "sbtest", "users": {"alice": {"password": "plain"}}}')
    try:
        p.start(wait_for_listeners=False)
        rc = p.proc.wait(timeout=10)
        check(rc != 0, "start refused")
        log = p.read_log()
        check("users.alice.password: plain passwords are not accepted" in log, "error names the key:\n" + log[-1500:])
    finally:
        p.stop()
        p.tmp.cleanup()


if __name__ == "__main__":
    sbtest.run([test_register_challenge_and_credentials, test_expired_nonce_is_stale,
                test_invite_407_then_relayed_without_credentials, test_sipp_caller_authenticates_with_407,
                test_bad_users_file_refuses_start])
