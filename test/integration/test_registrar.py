"""Issue 4: registrar and location that survive a restart. SIPp registers 1000 users; fetch,
refresh, removal (expires=0 and '*'); restart by SIGTERM and by kill -9 after the batch
window keeps every unexpired binding; expiry with a short expires; bad Contact → 400;
a flood past the per-AOR limit is refused with the table unchanged."""
import os
import re
import signal
import subprocess
import time
import sbtest
from sbtest import Proxy, UdpClient, check

SIPP_DIR = os.path.join(sbtest.SOURCE_DIR, "test", "data", "sipp")


def register(c, port, user, contacts=(), expires=None, call_id=None, cseq=1, extra=()):
    hdrs = ["Contact: %s" % ct for ct in contacts]
    if expires is not None:
        hdrs.append("Expires: %d" % expires)
    hdrs += list(extra)
    c.dest = ("127.0.0.1", port)
    c.send(sbtest.request("REGISTER", "sip:localhost", c, extra_headers=hdrs, call_id=call_id, cseq=cseq,
                          from_uri="sip:%s@localhost" % user, to_uri="sip:%s@localhost" % user))
    return c.recv_response(timeout=3, skip_provisional=True)


def contacts_of(r):
    out = []
    for v in r.all("Contact") + r.all("m"):
        for part in re.split(r",(?![^<]*>)", v):
            part = part.strip()
            if part:
                out.append(part)
    return out


def uri_of(contact):
    m = re.search(r"<([^>]*)>", contact)
    return m.group(1) if m else contact.split(";")[0]


def expires_of(contact):
    m = re.search(r";\s*expires=(\d+)", contact)
    return int(m.group(1)) if m else None


def sipp_register(port, users, tmp, expires=3600):
    csv = os.path.join(tmp, "users.csv")
    with open(csv, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(users):
            f.write("user%d\n" % i)
    cmd = ["sipp", "127.0.0.1:%d" % port, "-sf", os.path.join(SIPP_DIR, "register.xml"),
           "-inf", csv, "-m", str(users), "-r", "500", "-l", "200", "-i", "127.0.0.1", "-p", "0",
           "-key", "domain", "localhost", "-key", "contact_host", "127.0.0.1",
           "-key", "contact_port", "5999", "-key", "expires", str(expires),
           "-nostdin", "-timeout", "60s", "-timeout_error"]
    res = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = res.stdout.decode("utf-8", "replace")
    return res.returncode, out


def sqlite_proxy(**kw):
    p = Proxy(workers=2, ipv6=False, **kw)
    db = os.path.join(p.tmp.name, "location.db")
    sbtest.deep_update(p.config, {"location": {"backend": "sqlite", "sqlite": {"path": db, "batch_ms": 200}},
                                  "registrar": {"min_expires": 1}})
    return p


def test_sipp_1000_users_then_fetch_and_restart():
    p = sqlite_proxy()
    with p:
        rc, out = sipp_register(p.port, 1000, p.tmp.name)
        check(rc == 0, "sipp registered 1000 users (rc=%d):\n%s" % (rc, out[-2000:]))
        c = UdpClient()
        for user in ("user0", "user517", "user999"):
            r = register(c, p.port, user)
            check(r and r.status == 200, "fetch %s: %r" % (user, r))
            cs = contacts_of(r)
            check(len(cs) == 1 and uri_of(cs[0]) == "sip:%s@127.0.0.1:5999;transport=udp" % user,
                  "binding of %s: %r" % (user, cs))
            check(r.header("Date") is not None, "Date header in 200")
        # Clean restart: SIGTERM flushes.
        check(p.stop() == 0, "clean exit")
        p.start()
        for user in ("user0", "user999"):
            r = register(c, p.port, user)
            check(r and r.status == 200 and len(contacts_of(r)) == 1, "after SIGTERM restart %s: %r" % (user, r))
        # Register one more, wait past the batch window, kill -9, restart.
        r = register(c, p.port, "late", ["<sip:late@127.0.0.1:5998>"], expires=600)
        check(r and r.status == 200, "late register")
        time.sleep(1.0)  # the batch window (200 ms) must pass before the kill: that is what is tested
        p.stop(sig=signal.SIGKILL)
        p.start()
        for user in ("user0", "user500", "late"):
            r = register(c, p.port, user)
            check(r and r.status == 200 and len(contacts_of(r)) == 1, "after kill -9 %s: %r" % (user, r))
        c.close()


def test_refresh_remove_and_star():
    with Proxy(workers=1, ipv6=False) as p:
        c = UdpClient()
        cid = "refresh-1"
        r = register(c, p.port, "bob", ["<sip:bob@127.0.0.1:7001>"], expires=300, call_id=cid, cseq=1)
        check(r.status == 200 and expires_of(contacts_of(r)[0]) in (299, 300), "first: %r" % contacts_of(r))
        r = register(c, p.port, "bob", ["<sip:bob@127.0.0.1:7002>;expires=600"], call_id="other", cseq=1)
        check(r.status == 200 and len(contacts_of(r)) == 2, "second binding: %r" % contacts_of(r))
        r = register(c, p.port, "bob", ["<sip:bob@127.0.0.1:7001>"], expires=900, call_id=cid, cseq=2)
        cs = {uri_of(x): expires_of(x) for x in contacts_of(r)}
        check(cs.get("sip:bob@127.0.0.1:7001") in (899, 900), "refreshed: %r" % cs)
        # Out-of-order CSeq for the same Call-ID: 500, nothing changed.
        r = register(c, p.port, "bob", ["<sip:bob@127.0.0.1:7001>"], expires=0, call_id=cid, cseq=1)
        check(r.status == 500, "out of order: %r" % r)
        r = register(c, p.port, "bob")
        check(len(contacts_of(r)) == 2, "unchanged: %r" % contacts_of(r))
        r = register(c, p.port, "bob", ["<sip:bob@127.0.0.1:7001>"], expires=0, call_id=cid, cseq=3)
        check(r.status == 200 and [uri_of(x) for x in contacts_of(r)] == ["sip:bob@127.0.0.1:7002"],
              "expires=0 removed one: %r" % contacts_of(r))
        r = register(c, p.port, "bob", ["*"], expires=0, call_id="star", cseq=1)
        check(r.status == 200 and contacts_of(r) == [], "* removed all: %r" % r.headers)
        r = register(c, p.port, "bob", ["*"], expires=60, call_id="star", cseq=2)
        check(r.status == 400, "* with nonzero Expires: %r" % r)
        r = register(c, p.port, "bob", ["<sip:bob@127.0.0.1:7003>"], expires=1, call_id="short", cseq=1)
        check(r.status == 423 and r.header("Min-Expires"), "423 with Min-Expires: %r" % r)
        c.close()


def test_expiry_observed():
    p = Proxy(workers=1, ipv6=False, extra={"registrar": {"min_expires": 1}})
    with p:
        c = UdpClient()
        r = register(c, p.port, "carol", ["<sip:carol@127.0.0.1:7004>"], expires=2)
        check(r.status == 200 and len(contacts_of(r)) == 1, "registered")
        gone = sbtest.poll(lambda: not contacts_of(register(c, p.port, "carol")), 6, interval=0.2)
        check(gone, "binding expired within 6 s")
        c.close()


def test_bad_contact_and_limit():
    p = Proxy(workers=2, ipv6=False, extra={"registrar": {"max_bindings_per_aor": 3}})
    with p:
        c = UdpClient()
        r = register(c, p.port, "dave", ["sip:dave@example.com?Route=%3Csip:x%3E"], expires=60)
        check(r.status == 400 and "Contact" in r.reason, "bad Contact named: %r" % r)
        for i in range(3):
            r = register(c, p.port, "dave", ["<sip:dave@127.0.0.1:%d>" % (8000 + i)], expires=600,
                         call_id="lim-%d" % i)
            check(r.status == 200, "binding %d accepted" % i)
        refused = 0
        for i in range(3, 50):
            r = register(c, p.port, "dave", ["<sip:dave@127.0.0.1:%d>" % (8000 + i)], expires=600,
                         call_id="lim-%d" % i)
            refused += r.status >= 400
        check(refused == 47, "flood past the limit refused: %d" % refused)
        r = register(c, p.port, "dave")
        check(sorted(uri_of(x) for x in contacts_of(r)) ==
              ["sip:dave@127.0.0.1:8000", "sip:dave@127.0.0.1:8001", "sip:dave@127.0.0.1:8002"],
              "table unchanged: %r" % contacts_of(r))
        c.close()


if __name__ == "__main__":
    sbtest.run([test_refresh_remove_and_star, test_expiry_observed, test_bad_contact_and_limit,
                test_sipp_1000_users_then_fetch_and_restart])
