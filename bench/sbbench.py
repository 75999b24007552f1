#!/usr/bin/env python3
"""bench/sbbench.py: Switchboard and Kamailio under the same SIPp load, on loopback.

    sbbench.py run      --proxy P --scenario calls|register --rate R --seconds S [options]
    sbbench.py rounds   --proxy P REF... [--scenario S] [--rates "1000 500"] [--rounds N]
    sbbench.py maxrate  --proxy P [--rates "1000 1500 ..."] [--seconds S] [--uacs N]
    sbbench.py memory   [--bindings N] [--transactions M]
    sbbench.py campaign --mode quick|full [--out DIR] [--proxies "..."]
    sbbench.py instructions --proxy P [--scenario calls|register]  (user space, callgrind)
    sbbench.py report   DIR            (tables + results JSON from DIR/runs.jsonl)

Proxies: switchboard (SQLite location, 2 workers pinned to a CPU each), switchboard-mem (memory location),
switchboard-w1 (1 worker), switchboard-tx (dispatch "transaction"), switchboard-normal
(scheduling "normal"), switchboard-unpinned (cpu_affinity "none"), kamailio (native config),
kamailio-pinned (the same, its two busiest processes pinned to a CPU each), kamailio-lua
(KEMI Lua routing).
Every one does the same job: registrar, Record-Route, location lookup, stateful relay.

One measurement ("run") starts the proxy, (calls) starts the SIPp UAS and registers the
callees through the proxy, samples the idle proxy, then measures: proxy CPU (utime+stime of
every thread of every process of the proxy, from /proc) before and after the SIPp UAC sends
rate x seconds calls or REGISTERs, plus a settle time so deferred work is counted. It stops
everything it started, by PID, also on failure or interrupt. Traffic stays on 127.0.0.1;
every SIPp has -m (count) and -timeout (wall clock). Python 3 standard library only.
"""
import argparse
import atexit
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SIPP_DIR = BENCH / "sipp"
KAM_DIR = BENCH / "kamailio"
HOST = "127.0.0.1"
TCK = os.sysconf("SC_CLK_TCK")

PROXIES = {
    "switchboard": {"kind": "sb", "backend": "sqlite", "workers": 2},
    "switchboard-mem": {"kind": "sb", "backend": "memory", "workers": 2},
    "switchboard-w1": {"kind": "sb", "backend": "sqlite", "workers": 1},
    # dispatch "transaction": requests spread over the workers by branch, handed to their owner
    "switchboard-tx": {"kind": "sb", "backend": "sqlite", "workers": 2, "dispatch": "transaction"},
    # scheduling "normal": the workers as ordinary threads (SCHED_OTHER), not SCHED_BATCH
    "switchboard-normal": {"kind": "sb", "backend": "sqlite", "workers": 2, "scheduling": "normal"},
    # cpu_affinity "none": the workers not pinned (switchboard-bench.json pins them: "auto")
    "switchboard-unpinned": {"kind": "sb", "backend": "sqlite", "workers": 2, "cpu_affinity": "none"},
    "kamailio": {"kind": "kam", "cfg": "kamailio-native.cfg", "workers": 2},
    # Kamailio has no affinity setting: its two busiest processes (the UDP receivers) are
    # pinned to CPU 0 and 1 with sched_setaffinity a few seconds before the first window
    "kamailio-pinned": {"kind": "kam", "cfg": "kamailio-native.cfg", "workers": 2, "pin_busiest": 2},
    "kamailio-lua": {"kind": "kam", "cfg": "kamailio-kemi.cfg", "workers": 2},
    # usrloc's hash sized for the bench's 10^5 users (2^16 slots) instead of Kamailio's
    # default 2^10: what an operator with that many users would set
    "kamailio-hash16": {"kind": "kam", "cfg": "kamailio-native.cfg", "workers": 2, "defines": {"UL_HASH": 16}},
}


def log(msg):
    print(f"[sbbench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """Something outside the proxy under test went wrong (ports busy, SIPp missing, ...)."""


# ------------------------------------------------------------------ processes we started
STARTED = []  # subprocess.Popen, in start order


def spawn(cmd, out_path, env=None):
    out = open(out_path, "wb")
    p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, env=env)
    out.close()
    STARTED.append(p)
    return p


def ppid_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            kids.setdefault(int(rest[1]), []).append(int(d))
        except (OSError, IndexError):
            pass
    return kids


def tree_pids(root):
    """root and all its descendants that are alive now."""
    kids = ppid_map()
    out, queue = [], [root]
    while queue:
        p = queue.pop(0)
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            queue.extend(kids.get(p, []))
    return out


def is_zombie_or_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop(p, sig=signal.SIGTERM, grace=5.0):
    """Stop a process we started and whatever it forked: `sig` to the root, then to the
    descendants still alive, SIGKILL after `grace` seconds. By PID only."""
    if p is None:
        return
    pids = tree_pids(p.pid) if p.poll() is None else []
    for pid in pids[:1]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    for pid in pids[1:]:
        if not is_zombie_or_gone(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    while time.time() < deadline and any(not is_zombie_or_gone(x) for x in pids[1:]):
        time.sleep(0.05)
    for pid in pids:
        if not is_zombie_or_gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        p.wait(timeout=2)
    except (subprocess.TimeoutExpired, ChildProcessError):
        pass
    if p in STARTED:
        STARTED.remove(p)


def stop_all():
    for p in reversed(list(STARTED)):
        stop(p, grace=3.0)


def on_signal(signum, _frame):
    log(f"signal {signum}: stopping what we started")
    stop_all()
    sys.exit(130)


atexit.register(stop_all)
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, on_signal)


def wait_rusage(p, timeout):
    """Reap p (a child) and return (exit code, user+sys CPU seconds); kill it on timeout."""
    deadline = time.time() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            if p in STARTED:
                STARTED.remove(p)
            return p.returncode, ru.ru_utime + ru.ru_stime
        if time.time() > deadline:
            log(f"pid {p.pid} ({p.args[0]}) over its time bound: killing it")
            os.kill(p.pid, signal.SIGKILL)
            deadline = time.time() + 5
        time.sleep(0.05)


# ------------------------------------------------------------------ /proc readings
def read_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    comm = data[data.index("(") + 1:data.rindex(")")]
    return comm, data.rsplit(")", 1)[1].split()


def pin_busiest(root, n, since):
    """Pin the n threads of the tree that used the most CPU since the snapshot `since` to the
    first n CPUs this process may use, one each (sched_setaffinity). Returns [(tid, name, cpu)]."""
    now = cpu_snapshot(root)["threads"]
    used = sorted(((ticks - since.get(tid, (name, 0))[1], tid, name) for tid, (name, ticks) in now.items()),
                  reverse=True)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = []
    for (_, tid, name), cpu in zip(used[:n], cpus):
        try:
            os.sched_setaffinity(tid, {cpu})
            pinned.append((tid, name, cpu))
        except OSError:
            pass
    return pinned


def cpu_snapshot(root):
    """{'ticks': utime+stime+cutime+cstime over the tree, 'sched_ns': run time of every live
    thread, 'threads': {tid: (name, ticks)}, 'procs': n}"""
    ticks, sched, threads, n = 0, 0, {}, 0
    for pid in tree_pids(root):
        try:
            _, f = read_stat(pid)
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
            n += 1
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    name, tf = read_stat(f"{pid}/task/{tid}")
                    threads[int(tid)] = (name, int(tf[11]) + int(tf[12]))
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as s:
                        sched += int(s.read().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
        except (OSError, ValueError, IndexError):
            pass
    return {"ticks": ticks, "sched_ns": sched, "threads": threads, "procs": n}


def proc_ticks(pid):
    try:
        _, f = read_stat(pid)
        return int(f[11]) + int(f[12])
    except (OSError, ValueError, IndexError):
        return 0


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def memory_of(root):
    rss = pss = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return rss, pss


def udp_ports_bound():
    ports = set()
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
        except (OSError, StopIteration):
            pass
    return ports


def wait_port(port, proc, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if port in udp_ports_bound():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------ SIPp output
def sipp_csv_last(path):
    """The last statistics row of a SIPp -trace_stat file as {column: value}."""
    try:
        with open(path, errors="replace") as f:
            rows = [r.rstrip("\n").split(";") for r in f if r.strip()]
    except OSError:
        return {}, []
    if len(rows) < 2:
        return {}, rows
    head = rows[0]
    return dict(zip(head, rows[-1])), rows


def num(v, default=0.0):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def creation_seconds(rows, target):
    """Seconds SIPp took to create `target` calls, from its 1 s statistics rows."""
    if len(rows) < 3:
        return None
    head = rows[0]
    try:
        ct, tc = head.index("CurrentTime"), head.index("TotalCallCreated")
    except ValueError:
        return None
    t0 = prev_t = prev_c = None
    for r in rows[1:]:
        try:
            t = float(r[ct].split("\t")[2])
            c = float(r[tc])
        except (IndexError, ValueError):
            continue
        if t0 is None:
            t0 = t
        if c >= target:
            if prev_c is not None and c > prev_c:
                t = prev_t + (t - prev_t) * (target - prev_c) / (c - prev_c)
            return t - t0
        prev_t, prev_c = t, c
    return None


def sipp_ms(v):
    """SIPp's HH:MM:SS:uuuuuu durations, in ms."""
    try:
        h, m, s, us = v.split(":")
        return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(us) / 1000
    except (AttributeError, ValueError):
        return None


# ------------------------------------------------------------------ capture: INVITE in -> out
def pcap_invite_latency(path, proxy_port, uas_port):
    """Per Call-ID: first INVITE arriving at the proxy, first INVITE sent to the UAS (only the
    proxy sends it one); the difference is the time the proxy added (kernel timestamps on lo)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if len(data) < 24:
        return None
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    else:
        endian = ">"
        magic = struct.unpack(">I", data[:4])[0]
    nano = magic == 0xA1B23C4D
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    l2 = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0}.get(linktype)
    if l2 is None:
        return None
    t_in, t_out = {}, {}
    pos = 24
    cid_re = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]+)", re.I)
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[pos:pos + 16])
        pkt = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ts = sec + frac / (1e9 if nano else 1e6)
        ip = pkt[l2:]
        if len(ip) < 28 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack(">HH", ip[ihl:ihl + 4])
        m = cid_re.search(ip[ihl + 8:])
        if not m:
            continue
        cid = m.group(1).strip()
        if dport == proxy_port:
            t_in.setdefault(cid, ts)
        elif dport == uas_port:  # only the proxy sends INVITEs to the UAS (from any of its ports)
            t_out.setdefault(cid, ts)
    d = sorted((t_out[c] - t_in[c]) * 1e6 for c in t_out if c in t_in and t_out[c] >= t_in[c])
    if not d:
        return {"n": 0, "in": len(t_in), "out": len(t_out)}

    def pct(p):
        return round(d[min(len(d) - 1, int(p / 100.0 * len(d)))], 1)

    return {"n": len(d), "in": len(t_in), "out": len(t_out), "p50_us": pct(50), "p90_us": pct(90),
            "p99_us": pct(99), "max_us": round(d[-1], 1), "mean_us": round(sum(d) / len(d), 1)}


# ------------------------------------------------------------------ proxies
def sb_path(args):
    """The switchboard binary under test: --sb-bin, else the Release build in build-bench/."""
    sb_bin = getattr(args, "sb_bin", None)
    return Path(sb_bin) if sb_bin else ROOT / "build-bench" / "app" / "switchboard"


def built_beside(args, *rel):
    """A bench tool of the same build tree as the switchboard under test (bench/bench.sh
    builds them together), e.g. built_beside(args, "bench", "memory", "bench_memory")."""
    return sb_path(args).parent.parent.joinpath(*rel)


def sb_binary(args):
    b = sb_path(args)
    if not b.exists():
        raise SetupError(f"{b} not found: build it (bench/bench.sh builds build-bench, Release)")
    return b


def start_proxy(name, args, work, ports):
    spec = PROXIES[name]
    port = ports["proxy"]
    if spec["kind"] == "sb":
        cfg = json.loads((BENCH / "switchboard-bench.json").read_text())
        cfg["workers"] = spec["workers"]
        for key in ("dispatch", "scheduling", "cpu_affinity"):  # what a variant changes
            if key in spec:
                cfg[key] = spec[key]
        if getattr(args, "cpu_affinity", None):
            cfg["cpu_affinity"] = args.cpu_affinity
        cfg["listen"] = [{"transport": "udp", "address": HOST, "port": port}]
        cfg["location"]["backend"] = spec["backend"]
        cfg["location"]["sqlite"]["path"] = str(work / "location.db")
        cfg["script"]["path"] = str(ROOT / "scripts" / "default.lua")
        cfg_path = work / "switchboard.json"
        cfg_path.write_text(json.dumps(cfg, indent=2))
        binary = sb_binary(args)
        chk = subprocess.run([str(binary), "check", "-c", str(cfg_path)], capture_output=True, text=True)
        if chk.returncode != 0:
            raise SetupError(f"switchboard check: {chk.stderr.strip() or chk.stdout.strip()}")
        cmd = [binary, "run", "-c", cfg_path]
    else:
        kam = getattr(args, "kam_bin", None) or "kamailio"
        if not shutil.which(kam):
            raise SetupError(f"{kam} not found (apt-get install kamailio kamailio-lua-modules)")
        cmd = [kam, "-f", KAM_DIR / spec["cfg"], "-l", f"udp:{HOST}:{port}", "-DD", "-E",
               "-x", "fm", "-X", "fm", "-m", str(args.kam_shm), "-M", "16", "-P", work / "kamailio.pid",
               "-Y", work, "-A", f"WORKERS={spec['workers']}"]
        for key, value in spec.get("defines", {}).items():
            cmd += ["-A", f"{key}={value}"]
        if spec["cfg"] == "kamailio-kemi.cfg":
            cmd += ["-A", f'KEMI_SCRIPT="{KAM_DIR / "kemi-route.lua"}"']
    (work / "proxy.cmd").write_text(" ".join(str(c) for c in cmd) + "\n")
    p = spawn(cmd, work / "proxy.log")
    if not wait_port(port, p, 20):
        tail = (work / "proxy.log").read_text(errors="replace")[-2000:]
        raise SetupError(f"{name} did not bind udp {HOST}:{port} within 20 s:\n{tail}")
    time.sleep(0.5)  # let every worker finish its start-up
    if p.poll() is not None:
        raise SetupError(f"{name} exited right after start (see {work}/proxy.log)")
    return p


# ------------------------------------------------------------------ one measurement
def write_users(path, names):
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for n in names:
            f.write(n + "\n")


def sipp_common(args):
    c = ["-i", HOST, "-nostdin", "-trace_stat", "-fd", "1", "-key", "domain", HOST]
    if args.sipp_buf > 0:
        c += ["-buff_size", str(args.sipp_buf)]
    return c


PROBE_FUNCS = {  # uprobes counting messages: received from a socket, received from another worker
    "sbreceive": "UvWorker7receiveE",
    "sbhandoff": "UvWorker18receive_handed_offE",
}


def add_handoff_probes(binary):
    """uprobes on UvWorker::receive and UvWorker::receive_handed_off (perf probe), for
    --count-handoffs. Each hit costs a trap: CPU figures of such a run are not comparable."""
    if not shutil.which("perf"):
        raise SetupError("--count-handoffs needs perf (apt-get install linux-perf)")
    if not os.path.exists("/sys/kernel/tracing/uprobe_events"):
        # systemd mounts tracefs; a bare container may not have it
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], capture_output=True)
    if not os.path.exists("/sys/kernel/tracing/uprobe_events"):
        raise SetupError("--count-handoffs needs tracefs at /sys/kernel/tracing (mount -t tracefs nodev /sys/kernel/tracing)")
    syms = subprocess.run(["nm", str(binary)], capture_output=True, text=True).stdout.split()
    events = []
    for name, frag in PROBE_FUNCS.items():
        mangled = next((x for x in syms if frag in x and x.startswith("_ZN2sb9transport6detail8UvWorker")
                        and "_ZGV" not in x and ".cold" not in x), None)
        if not mangled:
            raise SetupError(f"no symbol for {name} in {binary}")
        subprocess.run(["perf", "probe", "-q", "-d", f"probe_switchboard:{name}"], capture_output=True)
        r = subprocess.run(["perf", "probe", "-q", "-x", str(binary), "-a", f"{name}={mangled}"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SetupError(f"perf probe {name}: {r.stderr.strip()}")
        events.append(f"probe_switchboard:{name}")
    return events


def remove_handoff_probes():
    for name in PROBE_FUNCS:
        subprocess.run(["perf", "probe", "-q", "-d", f"probe_switchboard:{name}"], capture_output=True)


def read_perf_stat_counts(path):
    counts = {}
    try:
        for line in Path(path).read_text().splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2].startswith("probe_switchboard:"):
                counts[f[2].split(":", 1)[1]] = int(float(f[0])) if f[0][:1].isdigit() else None
    except OSError:
        pass
    return counts


def horizon_s(name):
    """How long the proxy keeps a finished transaction, so how long after a call its
    deferred work (timers, freeing) still runs. Switchboard: Timers J/L/M = 64*T1 (RFC 3261
    §17, RFC 6026). Kamailio tm: the 5 s wait timer."""
    if PROXIES[name]["kind"] == "sb":
        t1 = json.loads((BENCH / "switchboard-bench.json").read_text()).get("timers", {}).get("t1_ms", 500)
        return 64 * t1 / 1000 + 2
    return 7


def created_at(rows, when):
    """SIPp's TotalCallCreated at epoch `when`, interpolated between its 1 s rows."""
    if len(rows) < 2:
        return None
    head = rows[0]
    try:
        ct, tc = head.index("CurrentTime"), head.index("TotalCallCreated")
    except ValueError:
        return None
    pts = []
    for r in rows[1:]:
        try:
            pts.append((float(r[ct].split("\t")[2]), float(r[tc])))
        except (IndexError, ValueError):
            pass
    if not pts:
        return None
    if when <= pts[0][0]:
        return pts[0][1] if when >= pts[0][0] - 1.5 else 0.0
    for (ta, ca), (tb, cb) in zip(pts, pts[1:]):
        if ta <= when <= tb:
            return ca + (cb - ca) * (when - ta) / (tb - ta) if tb > ta else cb
    return pts[-1][1]


def run_one(args):
    """One bounded measurement; returns the result dict (also on a failed verdict).

    Steady mode (args.windows > 0): the UAC runs warm-up + windows x window seconds; proxy
    CPU is read at each window's edges, so each window holds the new work of its calls and
    the deferred work (timers, freeing) of calls from before it, as in a long-running proxy.
    The warm-up is the proxy's transaction horizon (horizon_s). Each window is one sample.
    Burst mode (args.windows == 0): one window from the UAC's start to `settle` s after its
    end (what quick runs and max-rate steps use; deferred work past `settle` is not counted).
    """
    name, scen, rate = args.proxy, args.scenario, args.rate
    if name not in PROXIES:
        raise SetupError(f"unknown proxy {name}; one of {', '.join(PROXIES)}")
    if not shutil.which("sipp"):
        raise SetupError("sipp not found (apt-get install sip-tester)")
    base = args.port_base
    ports = {"proxy": base, "uac": base + 1, "reg": base + 2, "uas": base + 10}
    n_uac = max(1, getattr(args, "uacs", 1) or 1)
    if n_uac > 1 and scen != "calls":
        raise SetupError("--uacs is for the calls scenario")
    # UAC k > 0 (--uacs): port base + 20 + k, its own statistics file uac<k>.csv
    uac_ports = [ports["uac" if scen == "calls" else "reg"]] + [base + 20 + k for k in range(1, n_uac)]
    busy = udp_ports_bound() & (set(ports.values()) | set(uac_ports))
    if busy:
        raise SetupError(f"udp ports {sorted(busy)} already in use (not ours): refusing to run")
    steady = args.windows > 0
    warmup = (args.warmup if args.warmup is not None else horizon_s(name)) if steady else 0.0
    secs = int(round(warmup + args.windows * args.seconds)) if steady else args.seconds
    work = Path(tempfile.mkdtemp(prefix=f"sbbench-{name}-{scen}-{rate}-"))
    target = rate * secs
    hold_s = (args.hold_ms + 999) // 1000
    recv_s = (args.recv_timeout + 999) // 1000
    uac_bound = secs + hold_s + recv_s + 30
    res = {"proxy": name, "scenario": scen, "rate": rate, "seconds": secs, "target": target,
           "mode": "steady" if steady else "burst", "warmup_s": warmup, "window_s": args.seconds, "uacs": n_uac,
           "label": args.label, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "load1_before": loadavg()}
    proxy = uas = cap = perf = counter = None
    probes = []
    try:
        if getattr(args, "count_handoffs", False):
            if PROXIES[name]["kind"] != "sb":
                raise SetupError("--count-handoffs is for Switchboard")
            probes = add_handoff_probes(sb_binary(args))
        proxy = start_proxy(name, args, work, ports)
        common = sipp_common(args)
        if scen == "calls":
            write_users(work / "callees.csv", (f"user{i}" for i in range(args.users)))
            uas = spawn(["sipp", "-sf", SIPP_DIR / "call-uas.xml", "-p", ports["uas"], *common,
                         "-timeout", uac_bound + args.settle + 60, "-stf", work / "uas.csv"], work / "uas.out")
            if not wait_port(ports["uas"], uas, 10):
                raise SetupError("SIPp UAS did not bind")
            # The callees register through the proxy, their contact being the UAS (not measured).
            reg = spawn(["sipp", f"{HOST}:{ports['proxy']}", "-sf", SIPP_DIR / "register.xml", "-inf",
                         work / "callees.csv", "-p", ports["reg"], *common, "-m", args.users, "-r",
                         args.prereg_rate, "-key", "contact_host", HOST, "-key", "contact_port", ports["uas"],
                         "-default_behaviors", "all,-bye", "-recv_timeout", 5000,
                         "-timeout", args.users // args.prereg_rate + 20, "-stf", work / "prereg.csv"],
                        work / "prereg.out")
            wait_rusage(reg, args.users // args.prereg_rate + 30)
            last, _ = sipp_csv_last(work / "prereg.csv")
            if int(num(last.get("SuccessfulCall(C)"))) != args.users:
                raise SetupError(f"pre-registration: {last.get('SuccessfulCall(C)')}/{args.users} callees "
                                 f"registered (see {work}/prereg.out)")
            uac_cmd = ["sipp", f"{HOST}:{ports['proxy']}", "-sf", SIPP_DIR / "call-uac.xml", "-inf",
                       work / "callees.csv", *common, "-d", args.hold_ms,
                       "-pause_msg_ign", "-l", rate * (hold_s + recv_s + 2) + 1000]
        else:
            write_users(work / "registrants.csv", (f"reg{i}" for i in range(target)))
            uac_cmd = ["sipp", f"{HOST}:{ports['proxy']}", "-sf", SIPP_DIR / "register.xml", "-inf",
                       work / "registrants.csv", *common, "-key", "contact_host", HOST,
                       "-key", "contact_port", ports["uas"], "-default_behaviors", "all,-bye",
                       "-l", rate * (recv_s + 2) + 1000]
        # The rate and the calls split over the UACs (several SIPp processes, when one SIPp
        # cannot create calls fast enough); each has its own port and statistics file.
        uacs = []
        for k in range(n_uac):
            rate_k = rate // n_uac + (1 if k < rate % n_uac else 0)
            tag = "uac" if k == 0 else f"uac{k}"
            cmd = uac_cmd + ["-p", uac_ports[k], "-m", rate_k * secs, "-r", rate_k, "-rp", 1000,
                             "-recv_timeout", args.recv_timeout, "-timeout", uac_bound, "-stf", work / f"{tag}.csv"]
            uacs.append({"cmd": cmd, "tag": tag, "target": rate_k * secs, "proc": None})

        # idle sample
        i0 = cpu_snapshot(proxy.pid)
        time.sleep(args.idle)
        i1 = cpu_snapshot(proxy.pid)
        res["idle_cpu_ms_per_s"] = round((i1["ticks"] - i0["ticks"]) / TCK * 1000 / args.idle, 1)

        def start_capture():
            # INVITEs only (the BPF filter matches "INVI" at the start of the UDP payload):
            # in from anyone to the proxy, out from the proxy to the UAS (Switchboard forwards
            # from a worker's reply port, not the listening one).
            if not (args.latency and scen == "calls"):
                return None
            flt = f"udp and udp[8:4] = 0x494e5649 and (dst port {ports['proxy']} or dst port {ports['uas']})"
            if shutil.which("dumpcap"):
                cmd = ["dumpcap", "-i", "lo", "-P", "-q", "-s", "1024", "-B", "32", "-f", flt,
                       "-w", work / "invites.pcap", "-a", f"duration:{uac_bound + 10}", "-c", target * 4 + 1000]
            elif shutil.which("tcpdump"):
                cmd = ["tcpdump", "-i", "lo", "-n", "-s", "1024", "-B", "32768", "-U", "-c", target * 4 + 1000,
                       "-w", work / "invites.pcap", flt]
            else:
                log("no dumpcap or tcpdump: latency not measured")
                return None
            c = spawn(cmd, work / "capture.out")
            t_end = time.time() + 10
            while time.time() < t_end and (not (work / "invites.pcap").exists()
                                           or (work / "invites.pcap").stat().st_size < 24):
                time.sleep(0.05)
            time.sleep(0.3)
            return c

        def start_counter():
            if not probes:
                return None
            return spawn(["perf", "stat", "-x", ",", "-e", ",".join(probes), "-p", str(proxy.pid),
                          "-o", work / "handoffs.csv"], work / "perf-stat.out")

        def snap():
            return {"t": time.time(), "cpu": cpu_snapshot(proxy.pid), "busy": machine_busy_ticks(),
                    "uas": proc_ticks(uas.pid) if uas else 0, "load1": loadavg()}

        # ---- measured phase
        if not steady:
            cap = start_capture()
        edges = []
        if not steady:
            edges.append(snap())
            counter = start_counter()
        if args.perf and not steady:
            perf = spawn(["perf", "record", "-F", str(args.perf_freq), "--call-graph", "dwarf,16384",
                          "-p", ",".join(map(str, tree_pids(proxy.pid))), "-o", args.perf], work / "perf.out")
            time.sleep(1.0)
        (work / "uac.cmd").write_text("".join(" ".join(str(c) for c in u["cmd"]) + "\n" for u in uacs))
        t0 = time.time()
        for u in uacs:
            u["proc"] = spawn(u["cmd"], work / f"{u['tag']}.out")
        uacs_done = lambda: all(u["proc"].poll() is not None for u in uacs)
        if steady:
            bounds = [t0 + warmup + k * args.seconds for k in range(args.windows + 1)]
            pin_n = PROXIES[name].get("pin_busiest", 0)
            if pin_n:  # over the last 3 s of the warm-up: which threads are busiest
                while time.time() < bounds[0] - 6 and not uacs_done():
                    time.sleep(0.05)
                before = cpu_snapshot(proxy.pid)["threads"]
                while time.time() < bounds[0] - 3 and not uacs_done():
                    time.sleep(0.05)
                log(f"pinned {pin_busiest(proxy.pid, pin_n, before)}")
            for k, edge in enumerate(bounds):
                if k == 0 and args.latency:
                    while time.time() < edge - 1.5 and not uacs_done():
                        time.sleep(0.05)
                    cap = start_capture()
                while time.time() < edge and not uacs_done():
                    time.sleep(0.02)
                if uacs_done():
                    break
                edges.append(snap())
                if k == 0:
                    counter = start_counter()
                if k == 0 and args.perf:
                    perf = spawn(["perf", "record", "-F", str(args.perf_freq), "--call-graph", "dwarf,16384",
                                  "-p", ",".join(map(str, tree_pids(proxy.pid))), "-o", args.perf], work / "perf.out")
            if perf:
                stop(perf, sig=signal.SIGINT, grace=120)
                perf = None
            if cap:
                stop(cap, sig=signal.SIGINT, grace=5)
                cap = None
            if counter:
                stop(counter, sig=signal.SIGINT, grace=10)
                counter = None
        uac_rc, uac_cpu = 0, 0.0
        for u in uacs:
            rc, c = wait_rusage(u["proc"], uac_bound + 10)
            uac_rc, uac_cpu = uac_rc or rc, uac_cpu + c
        t1 = time.time()
        if perf:
            stop(perf, sig=signal.SIGINT, grace=120)
            perf = None
        if not steady:
            time.sleep(args.settle)
            edges.append(snap())
        if counter:
            stop(counter, sig=signal.SIGINT, grace=10)
            counter = None
        rss, pss = memory_of(proxy.pid)
        alive = proxy.poll() is None
        # ---- end of measured phase
        if cap:
            stop(cap, sig=signal.SIGINT, grace=5)
            cap = None
        if uas:
            stop(uas)
            uas = None

        for u in uacs:
            u["last"], u["rows"] = sipp_csv_last(work / f"{u['tag']}.csv")
            if not u["last"]:
                raise SetupError(f"no SIPp statistics (rc {uac_rc}); see {work}/{u['tag']}.out")
        g = lambda k: sum(int(num(u["last"].get(k))) for u in uacs)
        ok, failed = g("SuccessfulCall(C)"), g("FailedCall(C)")
        timeouts = g("FailedTimeoutOnRecv(C)") + g("FailedMaxUDPRetrans(C)")
        achieved = 0.0
        for u in uacs:
            cs = creation_seconds(u["rows"], u["target"])
            created = int(num(u["last"].get("TotalCallCreated")))
            achieved += u["target"] / cs if cs else (created / (t1 - t0) if t1 > t0 else 0)

        def created_all(when):
            c = [created_at(u["rows"], when) for u in uacs]
            return None if None in c else sum(c)
        windows = []
        for a, b in zip(edges, edges[1:]):
            if steady:
                ca, cb = created_all(a["t"]), created_all(b["t"])
                ops = (cb - ca) if (ca is not None and cb is not None) else rate * (b["t"] - a["t"])
            else:
                ops = ok
            cpu = (b["cpu"]["ticks"] - a["cpu"]["ticks"]) / TCK
            uas_cpu = (b["uas"] - a["uas"]) / TCK
            busy = (b["busy"] - a["busy"]) / TCK
            w = {"seconds": round(b["t"] - a["t"], 2), "ops": round(ops), "cpu_s": round(cpu, 2),
                 "cpu_us_per_op": round(cpu * 1e6 / ops, 1) if ops else None,
                 "sched_cpu_s": round((b["cpu"]["sched_ns"] - a["cpu"]["sched_ns"]) / 1e9, 3),
                 "sipp_uas_cpu_s": round(uas_cpu, 2), "machine_busy_s": round(busy, 2),
                 "load1": b["load1"]}
            threads = []
            for tid, (tname, ticks) in b["cpu"]["threads"].items():
                before = a["cpu"]["threads"].get(tid, (tname, 0))[1]
                threads.append((round((ticks - before) / TCK, 2), tname))
            w["threads_cpu_s"] = sorted(threads, reverse=True)[:6]
            windows.append(w)
        # SIPp UAC CPU: over the whole run, scaled to the windows' share of the calls
        uac_share = sum(w["ops"] for w in windows) / max(1, g("TotalCallCreated"))
        for w in windows:
            w["sipp_uac_cpu_s"] = round(uac_cpu * w["ops"] / max(1, g("TotalCallCreated")), 2)
            others = w["machine_busy_s"] - w["cpu_s"] - w["sipp_uas_cpu_s"] - w["sipp_uac_cpu_s"]
            # Some VMs' /proc/stat counts far less busy time than their processes' own counters
            # (0.3 s against 4 s of proxy and SIPp in a 15 s window): "others" is unknown there.
            w["others_cpu_s"] = round(others, 2) if others > -0.1 else None
        per_op = [w["cpu_us_per_op"] for w in windows if w["cpu_us_per_op"] is not None]
        uas_last, _ = sipp_csv_last(work / "uas.csv") if scen == "calls" else ({}, [])
        res.update({
            "created": g("TotalCallCreated"), "ok": ok, "failed": failed, "timeouts": timeouts,
            "unexpected": g("FailedUnexpectedMessage(C)"), "retrans": g("Retransmissions(C)"),
            "dead_msgs": g("DeadCallMsgs(C)"), "out_of_call": g("OutOfCallMsgs(C)"),
            "watchdog_major": g("WatchdogMajor(C)"),
            "uas_retrans": int(num(uas_last.get("Retransmissions(C)"))) if uas_last else None,
            "uas_failed": int(num(uas_last.get("FailedCall(C)"))) if uas_last else None,
            "achieved_rate": round(achieved, 1), "sipp_resp_ms": sipp_ms(uacs[0]["last"].get("ResponseTime1(C)")),
            "windows": windows,
            "cpu_us_per_op": round(statistics.median(per_op), 1) if per_op else None,
            "cpu_s": round(sum(w["cpu_s"] for w in windows), 2),
            "settle_s": None if steady else args.settle,
            "rss_kb": rss, "pss_kb": pss, "alive": alive, "proxy_procs": edges[-1]["cpu"]["procs"] if edges else 0,
            "sipp_uac_cpu_s": round(uac_cpu, 2), "sipp_uac_cpu_windows_s": round(uac_cpu * uac_share, 2),
            "sipp_uas_cpu_s": round(sum(w["sipp_uas_cpu_s"] for w in windows), 2),
            "others_cpu_s": (None if any(w["others_cpu_s"] is None for w in windows)
                             else round(sum(w["others_cpu_s"] for w in windows), 2)),
            "uac_wall_s": round(t1 - t0, 2), "load1_after": loadavg(), "sipp_rc": uac_rc,
            "hold_ms": args.hold_ms,
        })
        if (work / "invites.pcap").exists():
            res["latency"] = pcap_invite_latency(work / "invites.pcap", ports["proxy"], ports["uas"])
        if probes:
            c = read_perf_stat_counts(work / "handoffs.csv")
            ops = sum(w["ops"] for w in windows) or 1
            res["handoffs"] = {"received_from_socket": c.get("sbreceive"), "handed_off": c.get("sbhandoff"),
                               "per_op": round((c.get("sbhandoff") or 0) / ops, 2),
                               "share_of_messages": round((c.get("sbhandoff") or 0) / max(1, c.get("sbreceive") or 1), 3),
                               "note": "uprobes on: CPU figures of this run are inflated"}
        reasons = []
        if not alive:
            reasons.append("proxy died")
        if ok < target * 0.999:
            reasons.append(f"ok {ok}/{target}")
        if failed > target * 0.001:
            reasons.append(f"failed {failed}")
        if timeouts > target * 0.001:
            reasons.append(f"timeouts {timeouts}")
        if achieved < rate * 0.95:
            reasons.append(f"SIPp created {achieved:.0f}/s")
        if not windows:
            reasons.append("no measurement window")
        res["verdict"] = "pass" if not reasons else "fail"
        res["why"] = "; ".join(reasons)
        return res
    finally:
        for p in (counter, perf, cap, uas, proxy):
            if p is not None:
                stop(p, sig=signal.SIGINT if p in (cap, perf, counter) else signal.SIGTERM)
        if probes:
            remove_handoff_probes()
        if args.keep:
            log(f"work dir kept: {work}")
            res["workdir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def wait_rusage_stop(p):
    """Stop a long-running SIPp (the UAS) so it writes its last statistics row; reap it."""
    try:
        os.kill(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    return wait_rusage(p, 10)


def run_or_error(a):
    """run_one, or a result that says why the run could not start: a campaign or a series of
    rounds records it and goes on with the next run."""
    try:
        return run_one(a)
    except SetupError as e:
        return {"proxy": a.proxy, "scenario": a.scenario, "rate": a.rate, "seconds": a.seconds,
                "target": a.rate * a.seconds, "label": a.label, "verdict": "error", "why": str(e)}


def short(r):
    if r.get("verdict") == "error":
        return f"{r['proxy']} {r['scenario']} {r['rate']}/s: error {r['why']}"
    lat = r.get("latency") or {}
    s = (f"{r['proxy']:<16} {r['scenario']:<8} {r['rate']:>5}/s ok {r.get('ok')}/{r['target']} "
         f"failed {r.get('failed')} to {r.get('timeouts')} retr {r.get('retrans')} "
         f"cpu {r.get('cpu_us_per_op')} us/op {[w['cpu_us_per_op'] for w in r.get('windows', [])]} "
         f"pss {r.get('pss_kb', 0) // 1024} MB sipp {r.get('sipp_uac_cpu_s')}+{r.get('sipp_uas_cpu_s')} s "
         f"others {r.get('others_cpu_s')} s load {r.get('load1_before')}")
    if lat.get("n"):
        s += f" lat p50 {lat['p50_us']} p99 {lat['p99_us']} us"
    return s + f" -> {r.get('verdict')} {r.get('why', '')}"


def append_jsonl(path, obj):
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(obj) + "\n")


def cmd_run(args):
    r = run_one(args)
    append_jsonl(args.out, r)
    print(json.dumps(r) if args.json else short(r))
    return 0 if r["verdict"] == "pass" else 1


def cmd_rounds(args):
    """Interleaved rounds: every proxy in turn at every rate, --rounds times over. On these VMs
    a proxy's CPU per call moves by tens of percent over minutes, so one run of each proxy is
    one draw; the medians of rounds taken minutes apart compare them (docs/performance.md).
    The first proxy is the one measured, the others its references."""
    rates = [int(x) for x in args.rates.split()]
    got = {}  # (rate, proxy) -> µs per operation of each round (None: the run failed)
    for k in range(1, args.rounds + 1):
        for rate in rates:
            for p in args.proxy:
                a = run_args(args, proxy=p, rate=rate, label=f"round {k}", latency=False, perf=None,
                             count_handoffs=False)
                r = run_or_error(a)
                r["round"] = k
                append_jsonl(args.out, r)
                log(f"round {k}: {short(r)}")
                ok = r["verdict"] == "pass" and isinstance(r.get("cpu_us_per_op"), (int, float))
                got.setdefault((rate, p), []).append(r["cpu_us_per_op"] if ok else None)
                time.sleep(1)
    print(render_rounds(args, rates, got))
    return 0


def render_rounds(args, rates, got):
    unit = "call" if args.scenario == "calls" else "REGISTER"
    ours, refs = args.proxy[0], args.proxy[1:]
    cols = [f"round {k}" for k in range(1, args.rounds + 1)]
    header = lambda what: ["| rate/s | " + what + " | " + " | ".join(cols) + " | median |",
                           "|---:|---|" + "---:|" * (len(cols) + 1)]
    out = [f"## {args.scenario}: interleaved rounds, µs CPU per {unit} ({args.windows} x {args.seconds} s windows)", ""]
    out += header("proxy")
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")
    for rate in rates:
        for p in args.proxy:
            v = got[(rate, p)]
            out.append(f"| {rate} | {p} | " + " | ".join(fmt(x) for x in v) + f" | {fmt(med(v))} |")
    if refs:
        out += ["", f"{ours} ÷ each reference, round by round (the median of the rounds' ratios last):", ""]
        out += header("÷")
        for rate in rates:
            for ref in refs:
                ratios = [a / b if a is not None and b else None
                          for a, b in zip(got[(rate, ours)], got[(rate, ref)])]
                m = med(ratios)
                out.append(f"| {rate} | {ref} | " + " | ".join("-" if x is None else f"{x:.2f}" for x in ratios)
                           + f" | {'-' if m is None else f'{m:.2f}'} |")
    return "\n".join(out)


# ------------------------------------------------------------------ max rate
def others_cores(r):
    """CPU the rest of the machine used during the measurement, in cores: /proc/stat busy time
    minus the proxy's and SIPp's. Rough: /proc/stat is sampled at the tick and misses part of
    short wake-ups (it can come out below zero on a quiet machine); the load average is the
    steadier indicator of other users' work."""
    w = r.get("windows") or []
    secs = sum(x.get("seconds", 0) for x in w)
    if not secs or any(x.get("others_cpu_s") is None for x in w):
        return None
    return round(sum(x["others_cpu_s"] for x in w) / secs, 2)


class RateSearch:
    """The max-rate search of one proxy: step up through the rates; a failing step is retried
    `retries` times; the first rate that fails every try ends the climb; then `bisect`
    halvings between the last passing and that rate."""

    def __init__(self, proxy, rates, retries, bisect):
        self.proxy, self.rates, self.retries, self.bisect = proxy, list(rates), retries, bisect
        self.best = self.first_fail = 0
        self.steps = []
        self.bisected = 0

    def next_rate(self):
        if not self.first_fail:
            up = [r for r in self.rates if r > self.best]
            return up[0] if up else None
        if self.bisected >= self.bisect or not self.best:
            return None
        mid = (self.best + self.first_fail) // 2 // 50 * 50
        return mid if self.best < mid < self.first_fail else None

    def record(self, rate, passed):
        if self.first_fail:
            self.bisected += 1
        if passed:
            self.best = rate
        else:
            self.first_fail = rate

    def summary(self, step_seconds):
        out = {"proxy": self.proxy, "scenario": "maxrate", "max_rate": self.best, "first_fail": self.first_fail,
               "step_seconds": step_seconds, "steps": len(self.steps),
               "steps_detail": [dict({k: x.get(k) for k in ("rate", "verdict", "why", "ok", "failed", "timeouts",
                                                             "retrans", "cpu_us_per_op", "sipp_uac_cpu_s",
                                                             "sipp_uas_cpu_s", "others_cpu_s", "load1_before",
                                                             "achieved_rate", "uacs")},
                                     others_cores=others_cores(x)) for x in self.steps]}
        if not self.first_fail:
            out["note"] = "every rate tried passed"
        return out


def max_rate_search(args, proxies):
    """Max-rate searches of several proxies, interleaved: each round gives every proxy still
    searching its next step, so proxies compared at a rate ran at about the same time (the
    machine is shared, its load drifts). Returns {proxy: summary}."""
    searches = [RateSearch(p, [int(x) for x in args.rates.split()], args.retries, args.bisect) for p in proxies]
    while True:
        active = [(sr, sr.next_rate()) for sr in searches]
        active = [(sr, r) for sr, r in active if r is not None]
        if not active:
            break
        for sr, rate in active:
            a = run_args(args, proxy=sr.proxy, scenario="calls", rate=rate, seconds=args.seconds, latency=False,
                         perf=None, settle=args.step_settle, windows=0, warmup=None, label="maxrate")
            passed = False
            for n in range(1 + sr.retries):
                r = run_one(a)
                sr.steps.append(r)
                append_jsonl(getattr(args, "out", None), r)
                log("  " + short(r))
                if r["verdict"] == "pass":
                    passed = True
                    break
                time.sleep(2)
            sr.record(rate, passed)
            time.sleep(1)
    return {sr.proxy: sr.summary(args.seconds) for sr in searches}


def max_rate(args):
    return max_rate_search(args, [args.proxy])[args.proxy]


def cmd_maxrate(args):
    for p, s in max_rate_search(args, args.proxy).items():
        append_jsonl(args.out, s)
        print(json.dumps({k: v for k, v in s.items() if k != "steps_detail"}))
    return 0


# ------------------------------------------------------------------ memory benchmark
def memory_bench(args):
    b = Path(args.memory_bin) if args.memory_bin else built_beside(args, "bench", "memory", "bench_memory")
    if not b.exists():
        return {"scenario": "memory", "error": f"{b} not built"}
    out = {"scenario": "memory"}
    for label, extra in (("typical", []), ("plain", ["--plain-contact"])):
        if label == "plain" and not args.memory_plain:
            continue
        cmd = [str(b), "--bindings", str(args.bindings), "--transactions", str(args.transactions), "--json", *extra]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        figures = {}
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                figures = json.loads(line)
        figures["wall_s"] = round(time.time() - t0, 1)
        figures["output"] = [l for l in p.stdout.splitlines() if not l.startswith("{")]
        out[label] = figures
    return out


def wakeup_bench(args):
    """bench/wakeup/udp_pingpong: CPU per UDP round trip on loopback, both processes on one
    CPU, on two, placed by the scheduler. The machine's price of a cross-CPU wake-up, which
    every proxy pays per datagram from a peer on another CPU."""
    b = built_beside(args, "bench", "wakeup", "udp_pingpong")
    if not b.exists():
        return {"scenario": "wakeup", "error": f"{b} not built"}
    p = subprocess.run([str(b), "100000"], capture_output=True, text=True, timeout=300)
    out = {"scenario": "wakeup", "round_trips": 100000, "output": p.stdout.splitlines()}
    for line in p.stdout.splitlines():
        m = re.match(r"(.+?)\s+wall\s+([\d.]+) us, CPU\s+([\d.]+) us \(sender\) \+\s+([\d.]+) us", line)
        if m:
            out[m.group(1).strip()] = {"wall_us": float(m.group(2)), "cpu_us_sender": float(m.group(3)),
                                       "cpu_us_echo": float(m.group(4))}
    if p.returncode != 0:
        out["error"] = (p.stderr.strip() or f"exit {p.returncode}")
    return out


def cmd_memory(args):
    m = memory_bench(args)
    append_jsonl(args.out, m)
    for line in m.get("typical", {}).get("output", []):
        print(line)
    return 0


# ------------------------------------------------------------------ profile
# Named shares (inclusive: a sample counts when any frame of its stack matches).
PROFILE_GROUPS = [
    ("parse (core::Message::parse)", r"core::Message::parse$"),
    ("second parse after a hand-off", None),
    ("Lua routing (LuaPolicy::run, all of it)", r"LuaPolicy::run$"),
    ("  of which inside the Lua VM (lua_pcallk)", r"^lua_pcallk$"),
    ("location lookup", r"LocationService::lookup$"),
    ("transaction timers (TransactionLayer::on_timer)", r"TransactionLayer::on_timer$"),
    ("UDP send (sendmsg, kernel loopback delivery included)", r"^__libc_sendmsg$|^sendmsg$"),
    ("UDP receive (recvmmsg)", r"__x64_sys_recvmmsg|__sys_recvmmsg|do_recvmmsg"),
    ("hand-off, sending side (UvWorker::push, uv_async_send)", r"UvWorker::push$|^uv_async_send$"),
    ("hand-off, receiving side (drain_inbox minus the message's own work)", None),
    ("event loop wait (epoll_wait, scheduling)", r"^epoll_wait$|__x64_sys_epoll_wait"),
    ("malloc/free (self)", None),
    ("kernel (self)", None),
]
MALLOC_RE = re.compile(r"^(_int_malloc|malloc|_int_free|cfree@GLIBC_2.2.5|free|__libc_free|__libc_malloc|"
                       r"malloc_consolidate|unlink_chunk.constprop.0|_int_realloc|realloc|operator new|"
                       r"operator delete|tcache_get|tcache_put|__GI___libc_malloc|__GI___libc_free)")


def perf_samples(data):
    """[(period, [(symbol, dso) leaf first])] from `perf script`."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,tid,period,ip,sym,dso"],
                         capture_output=True, text=True, errors="replace").stdout
    samples, cur, period = [], None, 0
    frame_re = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\(([^)]*)\)\s*$")
    for line in out.splitlines():
        if not line.strip():
            if cur is not None:
                samples.append((period, cur))
            cur = None
            continue
        if not line[0].isspace():
            parts = line.split()
            try:
                period = int(parts[-1])
            except (ValueError, IndexError):
                period = 1
            cur = []
            continue
        m = frame_re.match(line)
        if m and cur is not None:
            sym, dso = m.group(1), m.group(2)
            if sym.endswith(" (inlined)"):
                sym = sym[:-10]
            cur.append((sym, os.path.basename(dso)))
    if cur is not None:
        samples.append((period, cur))
    return samples


def short_sym(sym):
    """Function names without template arguments and parameter lists, for tables."""
    s = re.sub(r"\(.*\)( const)?$", "", sym)
    m = re.match(r"std::_Hashtable<([^,<>]+(?:<[^<>]*>)?)[,>]", s)
    if m:  # which table: std::unordered_map<Key...>::method
        key = m.group(1).split("::")[-1]
        return f"std::unordered_map<{key}>::{s.rsplit('::', 1)[-1]}"
    depth, outp = 0, []
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            outp.append(ch)
    s = "".join(outp)
    return s if len(s) < 110 else s[:107] + "..."


def analyze_profile(data, top=15):
    samples = perf_samples(data)
    total = sum(p for p, _ in samples) or 1
    self_by, dso_by = {}, {}
    for p, st in samples:
        if not st:
            continue
        # self time goes to the function the code was compiled into, not to what was inlined there
        leaf, dso = next(((f, d) for f, d in st if d != "inlined"), st[0])
        key = short_sym(leaf) if not leaf.startswith("[unknown]") else f"[unknown in {dso}]"
        if dso == "kernel.kallsyms]" or dso.startswith("[kernel"):
            key = f"[k] {key}"
        self_by[key] = self_by.get(key, 0) + p
        d = "kernel" if "kernel" in dso else dso
        dso_by[d] = dso_by.get(d, 0) + p
    groups = []
    for label, pat in PROFILE_GROUPS:
        acc = 0
        if pat:
            rx = re.compile(pat)
            for p, st in samples:
                if any(rx.search(short_sym(f)) for f, _ in st):
                    acc += p
        elif label.startswith("second parse"):
            for p, st in samples:
                names = [short_sym(f) for f, _ in st]
                for i, n in enumerate(names):
                    if n.endswith("core::Message::parse"):
                        rest = [x for x in names[i + 1:] if not x.endswith("Message::parse")]
                        if rest and rest[0].endswith("receive_handed_off"):
                            acc += p
                        break
        elif label.startswith("hand-off, receiving"):
            for p, st in samples:
                names = [short_sym(f) for f, _ in st]
                if any(n.endswith("drain_inbox") for n in names) and not any(
                        n.endswith("SipWorker::on_message") or n.endswith("core::Message::parse") for n in names):
                    acc += p
        elif label.startswith("malloc"):
            acc = sum(p for p, st in samples if st and MALLOC_RE.match(
                next((f for f, d in st if d != "inlined"), st[0][0])))
        elif label.startswith("kernel"):
            acc = sum(p for p, st in samples if st and "kernel" in st[0][1])
        groups.append((label, round(100.0 * acc / total, 1)))
    tops = sorted(self_by.items(), key=lambda kv: -kv[1])[:top]
    return {"samples": len(samples), "top_self": [(k, round(100.0 * v / total, 2)) for k, v in tops],
            "by_dso": sorted(((k, round(100.0 * v / total, 1)) for k, v in dso_by.items()), key=lambda kv: -kv[1]),
            "groups": groups}


def render_profile(prof, title):
    lines = [f"### {title} ({prof['samples']} samples)", "", "| # | function (self time) | share |", "|---:|---|---:|"]
    for i, (k, v) in enumerate(prof["top_self"], 1):
        lines.append(f"| {i} | `{k}` | {v:.1f} % |")
    lines += ["", "| where the time goes (inclusive) | share |", "|---|---:|"]
    for k, v in prof["groups"]:
        lines.append(f"| {k} | {v:.1f} % |")
    lines += ["", "by binary: " + ", ".join(f"{k} {v:.1f} %" for k, v in prof["by_dso"][:6]), ""]
    return "\n".join(lines)


def cmd_profile(args):
    if not shutil.which("perf"):
        raise SetupError("perf not found (apt-get install linux-perf)")
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="sbbench-perf-")) / "perf.data"
    if not args.analyze_only:
        a = run_args(args, latency=False, perf=str(data), label="profile")
        r = run_one(a)
        log(short(r))
    prof = analyze_profile(data, args.top)
    title = f"{args.proxy}, {args.scenario} at {args.rate}/s" if not args.analyze_only else str(data)
    text = render_profile(prof, title)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(prof, indent=2) + "\n")
    return 0


# ------------------------------------------------------------------ instructions
def callgrind_total(path):
    """Instructions (Ir) of one callgrind output file: its 'totals:' (or 'summary:') line."""
    total = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
    return total or 0


def cmd_instructions(args):
    """User-space instructions per call (or REGISTER) of a proxy, every process and thread,
    under callgrind: two runs of the same length at a low and a higher rate, and the
    difference of their totals / the difference of their operations, so start-up, shut-down
    and the per-second work of timers cancel out. Deterministic where CPU time on a shared
    machine is not, but blind to the kernel."""
    if not shutil.which("valgrind"):
        raise SetupError("valgrind not found (apt-get install valgrind)")
    kam = PROXIES[args.proxy]["kind"] == "kam"
    real = shutil.which(args.kam_bin or "kamailio") if kam else str(sb_binary(args).resolve())
    if not real:
        raise SetupError("kamailio not found (apt-get install kamailio kamailio-lua-modules)")
    totals = {}
    low, high = (int(x) for x in args.rates.split())
    for rate in (low, high):
        tmp = Path(tempfile.mkdtemp(prefix="sbbench-instr-"))
        try:
            wrap = tmp / ("kamailio" if kam else "switchboard")
            wrap.write_text("#!/bin/sh\n"
                            f"exec valgrind --tool=callgrind --callgrind-out-file={tmp}/callgrind.%p "
                            f'{real} "$@"\n')
            wrap.chmod(0o755)
            a = run_args(args, rate=rate, windows=0, latency=False, perf=None,
                         count_handoffs=False, label="instructions",
                         recv_timeout=max(args.recv_timeout, 20000),
                         **({"kam_bin": str(wrap)} if kam else {"sb_bin": str(wrap)}))
            r = run_one(a)
            log(short(r))
            if r["verdict"] != "pass":
                raise SetupError(f"the run at {rate}/s failed: {r.get('why')}")
            time.sleep(2)  # every process has written its file
            files = sorted(tmp.glob("callgrind.*"))
            totals[rate] = (sum(callgrind_total(f) for f in files), r["ok"], len(files))
        finally:
            if args.keep:
                log(f"callgrind files kept: {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    (t1, ok1, _), (t2, ok2, procs) = totals[low], totals[high]
    per_op = (t2 - t1) / max(1, ok2 - ok1)
    res = {"proxy": args.proxy, "scenario": args.scenario, "rates": [low, high], "seconds": args.seconds,
           "instructions_per_op": round(per_op), "runs": {str(k): v[0] for k, v in totals.items()},
           "processes": procs}
    print(json.dumps(res) if args.json else
          f"{args.proxy:<16} {args.scenario:<8} {per_op / 1000:.1f}k instructions per "
          f"{'call' if args.scenario == 'calls' else 'REGISTER'} "
          f"({ok1} vs {ok2} in {args.seconds} s, {procs} callgrind files)")
    if args.out:
        append_jsonl(args.out, res)
    return 0


# ------------------------------------------------------------------ campaign
PLANS = {
    # make bench-quick: one short burst per figure (under 5 minutes). Burst windows end
    # `settle` s after the load, so deferred work later than that (Switchboard's 32 s
    # transaction timers) is not in the quick figures; the full run measures steady state.
    "quick": {"windows": 0, "call_rates": [500, 1000], "call_seconds": 6, "reg_rates": [2000],
              "reg_seconds": 5, "settle": 4,
              "call_proxies": ["switchboard", "kamailio", "kamailio-lua"],
              "reg_proxies": ["switchboard", "switchboard-mem", "kamailio", "kamailio-lua"],
              "extra_runs": [],
              "maxrate_proxies": ["switchboard", "kamailio"], "maxrate_rates": "1500 3000",
              "maxrate_seconds": 5, "maxrate_retries": 0, "maxrate_bisect": 0,
              "memory": True, "memory_plain": False, "wakeup": True},
    # make bench: steady state, two measured windows per run after a warm-up as long as the
    # proxy's transaction horizon (under 30 minutes)
    "full": {"windows": 2, "call_rates": [500, 1000], "call_seconds": 15, "reg_rates": [1000, 2000, 4000],
             "reg_seconds": 10, "settle": 6,
             "call_proxies": ["switchboard", "kamailio", "kamailio-lua"],
             "reg_proxies": ["switchboard", "kamailio", "kamailio-lua"],
             "extra_runs": [("switchboard-mem", "register", 2000), ("switchboard-mem", "register", 4000),
                            ("switchboard-w1", "calls", 1000), ("switchboard-tx", "calls", 1000),
                            ("kamailio-hash16", "register", 2000), ("kamailio-hash16", "register", 4000)],
             "maxrate_proxies": ["switchboard", "kamailio", "kamailio-lua"],
             # two SIPp UACs: one creates at most about 9000 calls/s on these cores
             "maxrate_rates": "2000 4000 6000 7000 8000 10000 12000 14000", "maxrate_uacs": 2,
             "maxrate_seconds": 10, "maxrate_retries": 1, "maxrate_bisect": 1,
             "memory": True, "memory_plain": True, "handoff_count": True, "wakeup": True},
}


def run_args(base, **kw):
    a = argparse.Namespace(**vars(base))
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def cmd_campaign(args):
    plan = dict(PLANS[args.mode])
    if args.proxies:
        keep = set(args.proxies.split())
        for k in ("call_proxies", "reg_proxies", "maxrate_proxies"):
            plan[k] = [p for p in plan[k] if p in keep]
        plan["extra_runs"] = [e for e in plan["extra_runs"] if e[0] in keep]
    out = Path(args.out_dir) if args.out_dir else BENCH / "results" / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs.jsonl"
    meta = environment(args)
    meta.update({"mode": args.mode, "plan": plan, "began": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    t_begin = time.time()
    log(f"campaign {args.mode}: results in {out}")

    def measure(proxy, scen, rate, secs, latency):
        a = run_args(args, proxy=proxy, scenario=scen, rate=rate, seconds=secs, label=args.mode,
                     latency=latency, perf=None, settle=plan["settle"], windows=plan["windows"], warmup=None)
        r = run_or_error(a)
        append_jsonl(runs, r)
        log(short(r))
        time.sleep(1)

    for rate in plan["call_rates"]:
        for p in plan["call_proxies"]:
            measure(p, "calls", rate, plan["call_seconds"], True)
    for rate in plan["reg_rates"]:
        for p in plan["reg_proxies"]:
            measure(p, "register", rate, plan["reg_seconds"], False)
    for p, scen, rate in plan["extra_runs"]:
        measure(p, scen, rate, plan["call_seconds"] if scen == "calls" else plan["reg_seconds"], scen == "calls")
    if plan.get("handoff_count") and "switchboard" in plan["call_proxies"]:
        # messages handed from the worker that read them to the worker that owns them: none
        # with dispatch "source" (checked in the table), about half the requests with
        # "transaction", whose extra CPU per call gives the cost of one
        a = run_args(args, proxy="switchboard-tx", scenario="calls", rate=1000, seconds=5, label="handoffs",
                     latency=False, perf=None, settle=2, windows=0, warmup=None, count_handoffs=True)
        try:
            r = run_one(a)
            append_jsonl(runs, r)
            log(f"hand-offs: {r.get('handoffs')}")
        except SetupError as e:
            log(f"hand-off count: {e}")
    if plan["maxrate_proxies"]:
        a = run_args(args, rates=plan["maxrate_rates"], seconds=plan["maxrate_seconds"],
                     retries=plan["maxrate_retries"], bisect=plan["maxrate_bisect"], out=None,
                     uacs=plan.get("maxrate_uacs", 1))
        log(f"max rate, interleaved: {' '.join(plan['maxrate_proxies'])} at {plan['maxrate_rates']}, "
            f"{a.uacs} SIPp UAC(s)")
        try:
            for p, s in max_rate_search(a, plan["maxrate_proxies"]).items():
                append_jsonl(runs, s)
                log(f"max rate {p}: {s.get('max_rate')} (first failing {s.get('first_fail') or 'none'})")
        except SetupError as e:
            log(f"max rate: {e}")
    if plan.get("wakeup"):
        log("wake-up cost (udp_pingpong)")
        append_jsonl(runs, wakeup_bench(args))
    if plan["memory"]:
        log("memory benchmark")
        m = memory_bench(run_args(args, memory_plain=plan.get("memory_plain", False)))
        append_jsonl(runs, m)
    meta["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["wall_minutes"] = round((time.time() - t_begin) / 60, 1)
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    report = build_report(out)
    latest = BENCH / "results" / "latest.json"
    latest.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    log(f"wrote {latest} ({meta['wall_minutes']} min)")
    return 0


def environment(args):
    def first_line(cmd, pattern=None):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        for line in (r.stdout + "\n" + r.stderr).splitlines():
            if line.strip() and (pattern is None or re.search(pattern, line)):
                return line.strip()
        return None

    cpu = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sb = None
    try:
        sb = first_line([str(sb_binary(args)), "version"])
    except SetupError:
        pass
    return {"host": socket.gethostname(), "cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "kamailio": first_line(["kamailio", "-v"]), "sipp": first_line(["sipp", "-v"], r"SIPp v"),
            "switchboard": sb, "load1_at_start": loadavg()}


# ------------------------------------------------------------------ report
def med(vals):
    v = [x for x in vals if isinstance(x, (int, float))]
    return statistics.median(v) if v else None


def spread(vals):
    v = [x for x in vals if isinstance(x, (int, float))]
    return [min(v), max(v)] if v else None


def build_report(outs):
    """The report over one or more campaign directories (repetitions are pooled)."""
    outs = [Path(o) for o in ([outs] if isinstance(outs, (str, Path)) else outs)]
    metas = [json.loads((o / "meta.json").read_text()) for o in outs if (o / "meta.json").exists()]
    meta = dict(metas[0]) if metas else {}
    if len(metas) > 1:
        meta["campaigns"] = [{k: m.get(k) for k in ("began", "ended", "mode", "wall_minutes", "load1_at_start")}
                             for m in metas]
    runs = [json.loads(l) for o in outs for l in (o / "runs.jsonl").read_text().splitlines() if l.strip()]
    out = outs[0]
    fixed = [r for r in runs if r.get("scenario") in ("calls", "register") and r.get("label") not in ("maxrate", "handoffs")]
    handoff = next((r.get("handoffs") for r in runs if r.get("label") == "handoffs" and r.get("handoffs")), None)
    groups = {}
    for r in fixed:
        groups.setdefault((r["scenario"], r["rate"], r["proxy"]), []).append(r)
    rows = []
    for (scen, rate, proxy), g in sorted(groups.items()):
        good = [r for r in g if r.get("verdict") in ("pass", "fail")]
        wins = [w for r in good for w in r.get("windows", [])]
        lat = [r.get("latency") or {} for r in good]
        rows.append({
            "scenario": scen, "rate": rate, "proxy": proxy, "runs": len(g), "windows": len(wins),
            "mode": good[0].get("mode") if good else None,
            "passed": sum(1 for r in g if r.get("verdict") == "pass"),
            "cpu_us_per_op": med([w.get("cpu_us_per_op") for w in wins]),
            "cpu_us_per_op_range": spread([w.get("cpu_us_per_op") for w in wins]),
            "ok": sum(r.get("ok", 0) for r in good), "target": sum(r.get("target", 0) for r in g),
            "failed": sum(r.get("failed", 0) for r in good), "timeouts": sum(r.get("timeouts", 0) for r in good),
            "retrans": sum(r.get("retrans", 0) for r in good),
            "uas_retrans": sum((r.get("uas_retrans") or 0) for r in good),
            "achieved_rate": med([r.get("achieved_rate") for r in good]),
            "rss_mb": med([r.get("rss_kb", 0) / 1024 for r in good]),
            "pss_mb": med([r.get("pss_kb", 0) / 1024 for r in good]),
            "latency_p50_us": med([l.get("p50_us") for l in lat]),
            "latency_p99_us": med([l.get("p99_us") for l in lat]),
            "latency_samples": sum(l.get("n", 0) for l in lat),
            "window_s": good[0].get("window_s") if good else None,
            "proxy_cpu_s_per_window": med([w.get("cpu_s") for w in wins]),
            "sipp_cpu_s_per_window": med([(w.get("sipp_uac_cpu_s") or 0) + (w.get("sipp_uas_cpu_s") or 0) for w in wins]),
            "others_cpu_s_per_window": med([w.get("others_cpu_s") for w in wins]),
            "others_cores": med([w["others_cpu_s"] / w["seconds"] for w in wins
                                 if w.get("seconds") and w.get("others_cpu_s") is not None]),
            "load1": med([w.get("load1") for w in wins]),
            "threads_cpu_s": (wins[0].get("threads_cpu_s") if wins else None),
        })
    maxrates = {}
    for r in runs:
        if r.get("scenario") == "maxrate":
            maxrates.setdefault(r["proxy"], []).append(r)
    memory = next((r for r in runs if r.get("scenario") == "memory"), None)
    wakeup = next((r for r in runs if r.get("scenario") == "wakeup"), None)

    def find(scen, rate, proxy):
        return next((x for x in rows if x["scenario"] == scen and x["rate"] == rate and x["proxy"] == proxy), None)

    ratios = []
    for x in rows:
        if not x["proxy"].startswith("switchboard"):
            continue
        for ref in ("kamailio", "kamailio-lua", "kamailio-hash16"):
            k = find(x["scenario"], x["rate"], ref)
            if k and k["cpu_us_per_op"] and x["cpu_us_per_op"]:
                ratios.append({"scenario": x["scenario"], "rate": x["rate"], "switchboard": x["proxy"],
                               "vs": ref, "cpu_ratio": round(x["cpu_us_per_op"] / k["cpu_us_per_op"], 3)})
    mr = {}
    for p, lst in maxrates.items():
        vals = [s.get("max_rate") for s in lst if s.get("max_rate") is not None]
        mr[p] = {"max_rate": med(vals), "each": [(s.get("max_rate"), s.get("first_fail")) for s in lst],
                 "first_fail": lst[-1].get("first_fail"),
                 "steps": [x for s in lst for x in (s.get("steps_detail") or [])],
                 "error": next((s.get("error") for s in lst if s.get("error")), None),
                 "note": next((s.get("note") for s in lst if s.get("note")), None)}
    if "switchboard" in mr and "kamailio" in mr and mr["kamailio"]["max_rate"]:
        mr["ratio_switchboard_kamailio"] = round(mr["switchboard"]["max_rate"] / mr["kamailio"]["max_rate"], 2)
    goals = judge_goals(rows, ratios, mr, memory)
    if handoff:
        src, tx = find("calls", 1000, "switchboard"), find("calls", 1000, "switchboard-tx")
        if src and tx and src["cpu_us_per_op"] and tx["cpu_us_per_op"] and handoff.get("per_op"):
            extra = tx["cpu_us_per_op"] - src["cpu_us_per_op"]
            handoff["tx_extra_us_per_call"] = round(extra, 1)
            handoff["us_per_handoff"] = round(extra / handoff["per_op"], 1)
    return {"meta": meta, "rows": rows, "ratios": ratios, "max_rate": mr, "memory": memory, "goals": goals,
            "handoffs": handoff, "wakeup": wakeup,
            "raw_runs": [str(o / "runs.jsonl") for o in outs]}


def judge_goals(rows, ratios, mr, memory):
    g = []

    def ratio(scen, rate, sb, vs):
        return next((r["cpu_ratio"] for r in ratios if r["scenario"] == scen and r["rate"] == rate
                     and r["switchboard"] == sb and r["vs"] == vs), None)

    for rate in (500, 1000):
        sb = next((x for x in rows if x["scenario"] == "calls" and x["rate"] == rate and x["proxy"] == "switchboard"), None)
        for vs, limit in (("kamailio-lua", 0.5), ("kamailio", 0.6)):
            r = ratio("calls", rate, "switchboard", vs)
            if r is not None:
                g.append({"goal": f"CPU/call at {rate}/s <= {limit} x {vs}", "value": r,
                          "met": r <= limit and sb is not None and sb["failed"] == 0})
    for rate in (1000, 2000, 4000):
        r = ratio("register", rate, "switchboard", "kamailio")
        if r is not None:
            g.append({"goal": f"CPU/REGISTER at {rate}/s (SQLite on) <= 0.5 x kamailio", "value": r, "met": r <= 0.5})
    if mr.get("switchboard", {}).get("max_rate") and mr.get("kamailio", {}).get("max_rate"):
        v = mr["ratio_switchboard_kamailio"]
        g.append({"goal": "max call rate >= 2 x kamailio", "value": v, "met": v >= 2})
    if memory and memory.get("typical"):
        t = memory["typical"]
        # MB read as MiB (what ps and top show); the value in 10^6 bytes is given too
        if t.get("rss_bindings_kb"):
            mib = t["rss_bindings_kb"] / 1024
            g.append({"goal": f"{t.get('bindings')} bindings < 400 MiB RSS (whole process)",
                      "value": f"{mib:.1f} MiB = {t['rss_bindings_kb'] * 1024 / 1e6:.1f} MB", "met": mib < 400})
        if t.get("rss_invites_delta_kb") is not None:
            mib = t["rss_invites_delta_kb"] / 1024
            g.append({"goal": f"{t.get('invites')} concurrent INVITE transactions < 500 MiB (RSS growth)",
                      "value": f"{mib:.1f} MiB = {t['rss_invites_delta_kb'] * 1024 / 1e6:.1f} MB", "met": mib < 500})
    return g


def fmt(v, nd=0):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def render(rep):
    m = rep.get("meta", {})
    lines = [f"# Switchboard vs Kamailio — {m.get('began', '?')} on {m.get('host')} "
             f"({m.get('cores')} cores, {m.get('cpu')}), mode {m.get('mode')}",
             f"{m.get('switchboard')} | {m.get('kamailio')} | {m.get('sipp')}", ""]
    for scen, unit in (("calls", "call"), ("register", "REGISTER")):
        sel = [x for x in rep["rows"] if x["scenario"] == scen]
        if not sel:
            continue
        lines.append(f"## {scen}")
        lines.append("")
        lines.append(f"| proxy | rate/s | runs pass | µs CPU/{unit} median (min–max over windows) | failed | timeouts "
                     f"| UAC retrans | achieved/s | PSS MB | RSS MB | INVITE in→out p50/p99 µs "
                     f"| CPU s per window: proxy / SIPp | load |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for x in sorted(sel, key=lambda x: (x["rate"], x["proxy"])):
            rng = x["cpu_us_per_op_range"]
            lat = (f"{fmt(x['latency_p50_us'])} / {fmt(x['latency_p99_us'])}" if x["latency_p50_us"] is not None
                   else "–")
            lines.append(
                f"| {x['proxy']} | {x['rate']} | {x['passed']}/{x['runs']} | **{fmt(x['cpu_us_per_op'])}** "
                f"({fmt(rng[0]) if rng else '–'}–{fmt(rng[1]) if rng else '–'}) | {x['failed']} | {x['timeouts']} "
                f"| {x['retrans']} | {fmt(x['achieved_rate'])} | {fmt(x['pss_mb'])} | {fmt(x['rss_mb'])} | {lat} "
                f"| {fmt(x['proxy_cpu_s_per_window'], 1)} / {fmt(x['sipp_cpu_s_per_window'], 1)} "
                f"| {fmt(x['load1'], 1)} |")
        lines.append("")
    if rep["ratios"]:
        lines.append("## CPU ratio Switchboard / Kamailio (lower is better)")
        lines.append("")
        lines.append("| scenario | rate/s | switchboard | vs | ratio |")
        lines.append("|---|---:|---|---|---:|")
        for r in rep["ratios"]:
            lines.append(f"| {r['scenario']} | {r['rate']} | {r['switchboard']} | {r['vs']} | {r['cpu_ratio']:.2f} |")
        lines.append("")
    mr = rep.get("max_rate") or {}
    if mr:
        uacs = sorted({x.get("uacs") or 1 for s in mr.values() if isinstance(s, dict) for x in (s.get("steps") or [])})
        lines.append("## max sustainable call rate (failed + timeouts <= 0.1 %, SIPp on the same cores, "
                     f"{'/'.join(map(str, uacs)) or 1} SIPp UAC(s))")
        lines.append("")
        lines.append("| proxy | max rate/s (median) | each campaign: max / first failing | steps (rate: verdict, "
                     "µs CPU/call, SIPp CPU s, load average) |")
        lines.append("|---|---:|---|---|")
        for p, s in mr.items():
            if not isinstance(s, dict):
                continue
            steps = ", ".join(f"{x['rate']}: {x['verdict']} {fmt(x.get('cpu_us_per_op'))} "
                              f"{fmt((x.get('sipp_uac_cpu_s') or 0) + (x.get('sipp_uas_cpu_s') or 0), 1)} "
                              f"load {fmt(x.get('load1_before'), 1)}"
                              for x in (s.get("steps") or []))
            each = ", ".join(f"{a} / {b or 'none'}" for a, b in (s.get("each") or []))
            lines.append(f"| {p} | {fmt(s.get('max_rate'))} | {each} | {steps or s.get('error')} |")
        if "ratio_switchboard_kamailio" in mr:
            lines.append(f"\nratio switchboard / kamailio: {mr['ratio_switchboard_kamailio']}")
        lines.append("")
    ho = rep.get("handoffs")
    if ho:
        lines.append("## cross-worker hand-off (2 workers, calls at 1000/s, dispatch \"transaction\")")
        lines.append("")
        lines.append(f"- messages read from a socket: {ho.get('received_from_socket')}, handed to their owner worker: "
                     f"{ho.get('handed_off')} ({100 * (ho.get('share_of_messages') or 0):.0f} %), "
                     f"{ho.get('per_op')} per call (uprobe counts; with dispatch \"source\", the default, none)")
        if "tx_extra_us_per_call" in ho:
            lines.append(f"- CPU per call, dispatch \"transaction\" minus \"source\": {ho['tx_extra_us_per_call']} µs, "
                         f"i.e. {ho['us_per_handoff']} µs per hand-off")
        lines.append("")
    wk = rep.get("wakeup")
    if wk:
        lines.append("## the machine's wake-up cost (bench/wakeup/udp_pingpong, 500-byte UDP round trips)")
        lines.append("")
        for l in wk.get("output", []):
            lines.append(f"    {l}")
        if wk.get("error"):
            lines.append(f"    {wk['error']}")
        lines.append("")
    mem = rep.get("memory")
    if mem:
        lines.append("## memory (bench_memory)")
        lines.append("")
        for label in ("typical", "plain"):
            for l in (mem.get(label) or {}).get("output", []):
                lines.append(f"    [{label}] {l}")
        if mem.get("error"):
            lines.append(f"    {mem['error']}")
        lines.append("")
    if rep.get("goals"):
        lines.append("## goals")
        lines.append("")
        for g in rep["goals"]:
            lines.append(f"- [{'x' if g['met'] else ' '}] {g['goal']}: {g['value']}")
    return "\n".join(lines)


def cmd_report(args):
    rep = build_report(args.dir)
    if args.write_latest:
        (BENCH / "results" / "latest.json").write_text(json.dumps(rep, indent=2) + "\n")
    print(render(rep))
    return 0


# ------------------------------------------------------------------ command line
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--port-base", type=int, default=25060,
                       help="proxy port; UAC +1, REGISTER client +2, UAS +10 (default 25060)")
        p.add_argument("--sb-bin", help="switchboard binary (default build-bench/app/switchboard)")
        p.add_argument("--cpu-affinity", choices=["none", "auto"],
                       help="switchboard: config cpu_affinity instead of the variant's / the bench config's")
        p.add_argument("--hold-ms", type=int, default=1000, help="call hold time between ACK and BYE")
        p.add_argument("--users", type=int, default=1000, help="callees registered before a call run")
        p.add_argument("--prereg-rate", type=int, default=1000)
        p.add_argument("--recv-timeout", type=int, default=10000, help="SIPp receive timeout, ms")
        p.add_argument("--idle", type=float, default=1.0, help="idle CPU sample, s")
        p.add_argument("--settle", type=float, default=6.0,
                       help="s of proxy CPU still counted after the UAC ends (deferred work)")
        p.add_argument("--windows", type=int, default=0,
                       help="steady mode: measure this many windows of --seconds after a warm-up "
                            "(0: burst mode, one window from the UAC's start to --settle after its end)")
        p.add_argument("--warmup", type=float, default=None,
                       help="steady mode warm-up, s (default: the proxy's transaction horizon)")
        p.add_argument("--sipp-buf", type=int, default=4 * 1024 * 1024, help="SIPp -buff_size (0: default)")
        p.add_argument("--uacs", type=int, default=1,
                       help="calls: SIPp UAC processes sharing the rate (one SIPp creates at most "
                            "about 9000 calls/s here)")
        p.add_argument("--kam-bin", help="kamailio binary (default: kamailio on the PATH)")
        p.add_argument("--kam-shm", type=int, default=2048,
                       help="Kamailio shared memory, MB (256 runs out near 1750 calls/s: tm's build_cell fails)")
        p.add_argument("--keep", action="store_true", help="keep the work directories")
        p.add_argument("--label", default="")

    p = sub.add_parser("run", help="one measurement")
    common(p)
    p.add_argument("--proxy", required=True, choices=sorted(PROXIES))
    p.add_argument("--scenario", required=True, choices=["calls", "register"])
    p.add_argument("--rate", type=int, required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--latency", action="store_true", help="capture INVITEs with dumpcap: proxy-added latency")
    p.add_argument("--perf", help="record a perf profile of the proxy during the measured phase to FILE")
    p.add_argument("--perf-freq", type=int, default=999)
    p.add_argument("--count-handoffs", action="store_true",
                   help="Switchboard: count messages handed to another worker (uprobes; CPU inflated)")
    p.add_argument("--out", help="append the result (JSON) to this file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("rounds", help="interleaved rounds of several proxies: per-round figures, ratios, medians")
    common(p)
    p.add_argument("--proxy", required=True, nargs="+", choices=sorted(PROXIES),
                   help="the proxy measured first, then its references (ratios: first ÷ each other)")
    p.add_argument("--scenario", default="calls", choices=["calls", "register"])
    p.add_argument("--rates", default="1000", help="rates to run in each round, in turn")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--out", help="append every run (JSON) to this file")
    p.set_defaults(func=cmd_rounds, windows=2, perf_freq=999)

    p = sub.add_parser("maxrate", help="highest call rate with failed + timeouts <= 0.1 %%")
    common(p)
    p.add_argument("--proxy", required=True, nargs="+", choices=sorted(PROXIES),
                   help="one or more proxies; several are searched interleaved, rate by rate")
    p.add_argument("--rates", default="1000 1500 2000 3000 4000 5000 6000 7000 8000")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--bisect", type=int, default=2)
    p.add_argument("--step-settle", type=float, default=2.0)
    p.add_argument("--out")
    p.set_defaults(func=cmd_maxrate)

    p = sub.add_parser("memory", help="run bench_memory")
    p.add_argument("--memory-bin")
    p.add_argument("--bindings", type=int, default=1_000_000)
    p.add_argument("--transactions", type=int, default=100_000)
    p.add_argument("--memory-plain", action="store_true", help="also run with plain contacts")
    p.add_argument("--out")
    p.set_defaults(func=cmd_memory)

    p = sub.add_parser("campaign", help="the whole comparison: make bench / make bench-quick")
    common(p)
    p.add_argument("--mode", choices=sorted(PLANS), default="full")
    p.add_argument("--out-dir")
    p.add_argument("--proxies", help="only these proxies (space separated)")
    p.add_argument("--memory-bin")
    p.add_argument("--bindings", type=int, default=1_000_000)
    p.add_argument("--transactions", type=int, default=100_000)
    p.add_argument("--step-settle", type=float, default=2.0)
    p.set_defaults(func=cmd_campaign)

    p = sub.add_parser("profile", help="perf profile of a proxy under the calls load, summarized")
    common(p)
    p.add_argument("--proxy", default="switchboard", choices=sorted(PROXIES))
    p.add_argument("--scenario", default="calls", choices=["calls", "register"])
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--perf-freq", type=int, default=1999)
    p.add_argument("--data", help="perf.data path (default: a temporary directory)")
    p.add_argument("--analyze-only", action="store_true", help="only summarize an existing --data file")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", help="write the summary as JSON")
    p.set_defaults(func=cmd_profile, windows=1)

    p = sub.add_parser("instructions", help="user-space instructions per operation, under callgrind")
    common(p)
    p.add_argument("--proxy", required=True, choices=sorted(PROXIES))
    p.add_argument("--scenario", default="calls", choices=["calls", "register"])
    p.add_argument("--rates", default="10 30",
                   help="the two rates, operations per second (valgrind is slow)")
    p.add_argument("--seconds", type=int, default=10, help="length of each run")
    p.add_argument("--out", help="append the result (JSON) to this file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_instructions)

    p = sub.add_parser("report", help="tables and results JSON from a campaign directory")
    p.add_argument("dir", nargs="+", help="campaign directories (their runs are pooled)")
    p.add_argument("--write-latest", action="store_true", help="also write bench/results/latest.json")
    p.set_defaults(func=cmd_report)

    args = ap.parse_args()
    try:
        return args.func(args)
    except SetupError as e:
        log(f"setup error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
