"""Real phones through the proxy: Debian's baresip and linphonec, headless, register with
switchboard and call each other through it, over UDP and over TCP, with 1 and 2 workers.

Per scenario: baresip "alice" and "bob" and linphonec "carol" register (the admin API's
/location shows all three bindings with the right transport, and each UA says it is
registered); then four calls, each answered automatically by the callee: baresip ->
baresip, baresip -> linphonec, linphonec -> baresip, hung up by the caller, and baresip ->
baresip hung up by the callee. For each call both UAs report it established and then ended
(the one hung up on by a BYE), and the proxy's /stats show that the INVITE, its 2xx, the ACK
and the BYE (and the BYE's 2xx) went through the proxy (the default script Record-Routes
INVITEs, so the in-dialog requests must come back through it).

UAs are driven over their control interfaces: baresip through its ctrl_tcp module (JSON
netstrings: commands in, UA events out), linphonec through commands on stdin and its
messages on stdout. Their config templates are in test/data/ua/. Every UA gets its own temp
dir (baresip -f, linphonec HOME and -c), SIP on 127.0.0.1 only, no sound card. Every
process is killed by PID in a finally block; every wait is a bounded poll."""
import json
import os
import re
import select
import shutil
import socket
import string
import subprocess
import tempfile
import time

import sbtest
from sbtest import Proxy, check, free_port

UA_DATA = os.path.join(sbtest.SOURCE_DIR, "test", "data", "ua")
BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
LINPHONEC = shutil.which("linphonec") or "/usr/bin/linphonec"
WAIT = 15.0  # seconds for any one UA state change; they take well under one here


def free_port_pair():
    """A port p with p and p + 1 free (UDP and TCP): baresip also listens on sip_listen + 1."""
    for _ in range(50):
        port = free_port()  # at most 32000
        if free_port_at(port + 1):
            return port
    raise RuntimeError("no free port pair")


def free_port_at(port):
    socks = []
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def render(template, dest, **values):
    with open(os.path.join(UA_DATA, template)) as f:
        text = string.Template(f.read()).substitute(values)
    with open(dest, "w") as f:
        f.write(text)


class Baresip:
    """One baresip process with one account, driven over ctrl_tcp."""

    def __init__(self, workdir, name, user, transport, proxy_port):
        self.name, self.user = name, user
        self.dir = os.path.join(workdir, "baresip-" + name)
        os.makedirs(self.dir)
        self.ctrl_port = free_port()
        render("baresip.config", os.path.join(self.dir, "config"), name=name,
               sip_port=free_port_pair(), ctrl_port=self.ctrl_port)
        render("baresip.accounts", os.path.join(self.dir, "accounts"), user=user,
               transport=transport, proxy_port=proxy_port)
        self.log_path = os.path.join(self.dir, "log")
        self.proc = None
        self.sock = None
        self.buf = b""
        self.events = []      # UA events in arrival order (dicts as baresip sent them)
        self.responses = {}   # command token -> response dict
        self.token = 0

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([BARESIP, "-f", self.dir], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def connect(self, timeout=WAIT):
        """Connect to ctrl_tcp once baresip listens on it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_alive()
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("baresip %s: ctrl_tcp never listened\n%s" % (self.user, self.log()))

    def check_alive(self):
        if self.proc.poll() is not None:
            raise AssertionError("baresip %s exited (%s)\n%s" % (self.user, self.proc.returncode, self.log()))

    def pump(self, timeout):
        """Read what arrives within timeout seconds; file every complete netstring."""
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if r:
            data = self.sock.recv(65536)
            check(data != b"", "baresip %s closed its control connection\n%s" % (self.user, self.log()))
            self.buf += data
        while True:
            colon = self.buf.find(b":")
            if colon <= 0:
                return
            n = int(self.buf[:colon])
            if len(self.buf) < colon + n + 2:
                return
            msg = json.loads(self.buf[colon + 1:colon + 1 + n])
            self.buf = self.buf[colon + n + 2:]  # payload and the closing ","
            if msg.get("response"):
                self.responses[msg.get("token")] = msg
            elif msg.get("event"):
                self.events.append(msg)

    def command(self, command, params=""):
        """Run a command (as typed in baresip's menu); its printed output, once it is ok."""
        self.token += 1
        token = str(self.token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        deadline = time.time() + WAIT
        while token not in self.responses and time.time() < deadline:
            self.pump(deadline - time.time())
        r = self.responses.get(token)
        check(r is not None and r.get("ok"), "baresip %s: %s %s -> %r" % (self.user, command, params, r))
        return r.get("data", "")

    def wait_event(self, kind, since=0, timeout=WAIT, **match):
        """The first event of this type (with these fields) at index >= since."""
        deadline = time.time() + timeout
        while True:
            for e in self.events[since:]:
                if e.get("type") == kind and all(e.get(k) == v for k, v in match.items()):
                    return e
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("baresip %s: no %s %r within %.0fs; events %s\n%s" % (
                    self.user, kind, match, timeout,
                    [e.get("type") for e in self.events if e.get("type") != "CALL_RTCP"], self.log()))
            self.check_alive()
            self.pump(min(left, 0.5))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        # The menu module redraws a call status line many times a second; keep the rest.
        return "\n".join(l for l in text.splitlines() if "audio=" not in l and l.strip())[-3000:]

    def kill(self):
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()


class Linphonec:
    """One linphonec process with one proxy config, driven over stdin/stdout."""

    def __init__(self, workdir, user, transport, proxy_port):
        self.user = user
        self.dir = os.path.join(workdir, "linphonec-" + user)
        # linphonec keeps its database under HOME; without the folder it logs an error.
        os.makedirs(os.path.join(self.dir, ".local", "share", "linphone"))
        sip, rtp, video = free_port(), free_port(), free_port()
        ports = ("sip_port=%d\nsip_tcp_port=-1" if transport == "udp" else "sip_port=-1\nsip_tcp_port=%d") % sip
        self.rc = os.path.join(self.dir, "linphonerc")
        render("linphonerc", self.rc, sip_ports=ports, user=user, transport=transport,
               proxy_port=proxy_port, rtp_port=rtp, rtp_port_end=rtp + 200,
               video_port=video, video_port_end=video + 200)
        self.proc = None
        self.out = ""

    def start(self):
        env = dict(os.environ, HOME=self.dir)
        self.proc = subprocess.Popen([LINPHONEC, "-c", self.rc, "-d", "0"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        # Calls must not open a sound card; answer incoming calls at once.
        self.command("soundcard use files")
        self.command("autoanswer enable")
        return self

    def command(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def pump(self, timeout):
        fd = self.proc.stdout.fileno()
        r, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if r:
            data = os.read(fd, 65536)
            if data:
                self.out += data.decode("utf-8", "replace")
            elif self.proc.poll() is not None:
                raise AssertionError("linphonec %s exited (%s)\n%s" % (self.user, self.proc.returncode,
                                                                       self.log()))

    def wait_for(self, pattern, since=0, timeout=WAIT):
        """The first match of the regex in the output from offset since on."""
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.out, since)
            if m:
                return m
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("linphonec %s: no /%s/ within %.0fs\n%s" % (self.user, pattern, timeout,
                                                                                self.log()))
            self.pump(min(left, 0.5))

    def log(self):
        lines = [l for l in self.out.splitlines() if "Could not find a suitable soundcard" not in l]
        return "\n".join(lines)[-3000:]

    def kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()


def stats(p):
    status, body = sbtest.admin(p, "GET", "/stats")
    check(status == 200, "/stats: %d %s" % (status, body))
    return json.loads(body)


def counts(p):
    s = stats(p)
    return s["requests_by_method"], s["responses_by_code"]


def through_proxy(p, before, what):
    """Wait until the proxy has counted this call's INVITE, ACK and BYE and two 200s (the
    INVITE's and the BYE's) since before. The UAs' own states say the call was set up and
    torn down; these counts say it was through us (the BYE and the ACK to the 2xx follow
    the Record-Route, so a proxy that fails to Record-Route fails here)."""
    req0, resp0 = before
    seen = {}

    def enough():
        req, resp = counts(p)
        seen.update({m: req.get(m, 0) - req0.get(m, 0) for m in ("INVITE", "ACK", "BYE")})
        seen["200"] = resp.get("200", 0) - resp0.get("200", 0)
        return min(seen[m] for m in ("INVITE", "ACK", "BYE")) >= 1 and seen["200"] >= 2

    check(sbtest.poll(enough, 5.0, 0.1), "%s: not all of INVITE/200/ACK/BYE/200 went through "
          "the proxy (counted since the call began: %r)" % (what, seen))


def wait_bindings(p, transport):
    """/location lists alice, bob (baresip) and carol (linphonec), bound over transport."""
    want = {"sip:alice@localhost": "baresip", "sip:bob@localhost": "baresip",
            "sip:carol@localhost": "Linphonec"}
    seen = {}

    def all_there():
        status, body = sbtest.admin(p, "GET", "/location")
        seen.clear()
        if status == 200:
            for b in json.loads(body)["bindings"]:
                seen[b["aor"]] = b
        return all(a in seen for a in want)

    check(sbtest.poll(all_there, WAIT, 0.1), "bindings for %s: %r\n%s" % (sorted(want), seen,
                                                                        p.read_log()[-2000:]))
    for aor, agent in want.items():
        b = seen[aor]
        check(b["source"].startswith(transport.upper() + ":127.0.0.1:"), "%s source %r" % (aor, b))
        check(agent in b["user_agent"], "%s user agent %r" % (aor, b))
        check(b["expires_in_s"] > 500, "%s expires %r" % (aor, b))
        if transport == "tcp":
            check("transport=tcp" in b["contact"], "%s contact %r" % (aor, b))


def baresip_registered(ua):
    """The UA's own view: its registration got a 200 (baresip's reginfo)."""
    def ok():
        info = re.sub(r"\x1b\[[0-9;]*m", "", ua.command("reginfo"))  # colour codes
        return re.search(r"sip:%s@localhost\s+OK\b" % ua.user, info) is not None
    check(sbtest.poll(ok, WAIT, 0.1), "baresip %s not registered: %r" % (ua.user, ua.command("reginfo")))


def linphonec_registered(ua):
    def ok():
        mark = len(ua.out)
        ua.command("status register")
        try:
            m = ua.wait_for(r"registered(=0|, identity=(\S+))", mark, 2.0)
        except AssertionError:
            return False
        return m.group(2) == "sip:%s@localhost" % ua.user
    check(sbtest.poll(ok, WAIT, 0.2), "linphonec %s not registered\n%s" % (ua.user, ua.log()))


def call_baresip_to_baresip(p, a, b, callee_hangs_up=False):
    """a calls b; the caller hangs up, or the callee (its BYE goes the other way along the
    Route set, to the caller's Contact)."""
    before = counts(p)
    ea, eb = len(a.events), len(b.events)
    a.command("dial", "sip:%s@localhost" % b.user)
    call = a.wait_event("CALL_ESTABLISHED", ea, direction="outgoing")
    b.wait_event("CALL_ESTABLISHED", eb, direction="incoming", id=call["id"])
    hanger, hung = (b, a) if callee_hangs_up else (a, b)
    mark = len(hung.events)
    hanger.command("hangup")
    hanger.wait_event("CALL_CLOSED", ea if hanger is a else eb, id=call["id"])
    # baresip reports a BYE from the far end as "Connection reset by peer" (ECONNRESET).
    closed = hung.wait_event("CALL_CLOSED", mark, id=call["id"])
    check("by peer" in closed.get("param", ""), "%s's call ended without a BYE: %r" % (hung.user, closed))
    through_proxy(p, before, "baresip %s -> baresip %s, %s hangs up" % (a.user, b.user, hanger.user))


def call_baresip_to_linphonec(p, a, c):
    before = counts(p)
    ea, mark = len(a.events), len(c.out)
    a.command("dial", "sip:%s@localhost" % c.user)
    call = a.wait_event("CALL_ESTABLISHED", ea, direction="outgoing")
    m = c.wait_for(r"Call (\d+) with sip:%s@localhost connected\." % a.user, mark)
    a.command("hangup")
    a.wait_event("CALL_CLOSED", ea, id=call["id"])
    c.wait_for(r"Call %s with sip:%s@localhost ended" % (m.group(1), a.user), m.end())
    through_proxy(p, before, "baresip %s -> linphonec %s" % (a.user, c.user))


def call_linphonec_to_baresip(p, c, b):
    before = counts(p)
    eb, mark = len(b.events), len(c.out)
    c.command("call sip:%s@localhost" % b.user)
    m = c.wait_for(r"Call (\d+) with sip:%s@localhost connected\." % b.user, mark)
    b.wait_event("CALL_ESTABLISHED", eb, direction="incoming", peeruri="sip:%s@localhost" % c.user)
    c.command("terminate")
    c.wait_for(r"Call %s with sip:%s@localhost ended" % (m.group(1), b.user), m.end())
    closed = b.wait_event("CALL_CLOSED", eb, direction="incoming")
    check("by peer" in closed.get("param", ""), "%s's call ended without a BYE: %r" % (b.user, closed))
    through_proxy(p, before, "linphonec %s -> baresip %s" % (c.user, b.user))


def scenario(transport, workers):
    check(os.access(BARESIP, os.X_OK) and os.access(LINPHONEC, os.X_OK),
          "baresip and linphonec must be installed (Debian packages baresip-core, linphone-cli)")
    uas = []
    with Proxy(workers=workers, ipv6=False) as p, tempfile.TemporaryDirectory(prefix="sbua-") as work:
        try:
            alice = Baresip(work, "a", "alice", transport, p.port)
            bob = Baresip(work, "b", "bob", transport, p.port)
            carol = Linphonec(work, "carol", transport, p.port)
            for ua in (alice, bob, carol):
                uas.append(ua)
                ua.start()
            alice.connect()
            bob.connect()

            wait_bindings(p, transport)
            baresip_registered(alice)
            baresip_registered(bob)
            linphonec_registered(carol)

            call_baresip_to_baresip(p, alice, bob)
            call_baresip_to_baresip(p, bob, alice, callee_hangs_up=True)
            call_baresip_to_linphonec(p, alice, carol)
            call_linphonec_to_baresip(p, carol, bob)
            check(stats(p)["script_errors"] == 0, "script errors")
        except Exception:
            print("--- switchboard log (%s, workers %d)\n%s" % (transport, workers, p.read_log()[-3000:]))
            raise
        finally:
            for ua in uas:
                ua.kill()


def test_udp_one_worker():
    scenario("udp", 1)


def test_tcp_one_worker():
    scenario("tcp", 1)


def test_udp_two_workers():
    scenario("udp", 2)


def test_tcp_two_workers():
    # Over TCP baresip puts the local port of the connection it opened in its Contact, so the
    # ACK and BYE reach it only over that connection, which one worker owns; the in-dialog
    # request may be read (and its transaction owned) by the other worker.
    scenario("tcp", 2)


if __name__ == "__main__":
    sbtest.run([test_udp_one_worker, test_tcp_one_worker, test_udp_two_workers, test_tcp_two_workers])
