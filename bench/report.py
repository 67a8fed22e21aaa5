#!/usr/bin/python3
"""bench/report.py: the fan-out benchmark's records and report (stdlib only).

  report.py meta --cmd CMD [--set k=v ...]        one JSON line: date, machine, versions
  report.py record --server S --phase P --rc RC --cmd CMD [--set k=v ...] [--h2load] < output
                                                  one JSON line wrapping a client result
                                                  (h2c-fanout's JSON line, or h2load's text)
  report.py report --in results.jsonl --out RESULTS.md [--svg p99.svg]
                   [--notes where-the-time-goes.md] [--profile DIR]
  report.py check --in results.jsonl              exit 1 when a run failed (the smoke)

bench/run.sh calls them; `report` can be rerun on a kept results.jsonl.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

SERVERS = ["mod_h2chat-direct", "mod_h2chat", "mod_h2chat-redis", "seed-node", "nchan"]
H2DIRECT, H2CHAT, H2REDIS, SEED, NCHAN = SERVERS
# bench/run.sh's SERVERS names -> the labels of the records
LABELS = {"h2chat-direct": H2DIRECT, "h2chat": H2CHAT, "h2chat-redis": H2REDIS, "seed": SEED,
          "nchan": NCHAN}


# ---------------------------------------------------------------- records

def parse_value(v):
    m = re.fullmatch(r"(-?\d+)/(\d+)", v)
    if m and int(m.group(2)):
        return int(m.group(1)) / int(m.group(2))
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_sets(pairs):
    out = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        out[k] = parse_value(v)
    return out


def cmd_output(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def first_match(pattern, text, default="?"):
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else default


def meta(args):
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = first_match(r"^model name\s*:\s*(.+)$", open("/proc/cpuinfo").read())
    nchan = cmd_output(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"])
    d = {
        "phase": "meta",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cmd": args.cmd,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1048576, 1),
        "kernel": platform.release(),
        "apache": first_match(r"Server version:\s*(\S+)", cmd_output(["/usr/sbin/apache2", "-v"])),
        "nginx": first_match(r"nginx version:\s*(\S+)", cmd_output(["nginx", "-v"])),
        "nchan": nchan or "?",
        "node": cmd_output(["node", "--version"]) or "?",
        "h2load": first_match(r"(nghttp2/\S+)", cmd_output(["h2load", "--version"])),
        "redis": first_match(r"v=(\S+)", cmd_output(["redis-server", "--version"])),
        "nofile_hard": cmd_output(["bash", "-c", "ulimit -Hn"]),
        "pid_max": open("/proc/sys/kernel/pid_max").read().strip(),
    }
    d.update(parse_sets(args.set))
    print(json.dumps(d))


def parse_h2load(text):
    d = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    if m:
        secs = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        d["finished_s"] = secs
        d["req_per_s"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        for i, k in enumerate(["total", "started", "done", "succeeded", "failed",
                               "errored", "timeout"]):
            d[k] = int(m.group(i + 1))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        for i, k in enumerate(["status_2xx", "status_3xx", "status_4xx", "status_5xx"]):
            d[k] = int(m.group(i + 1))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        d["req_time_min"], d["req_time_max"], d["req_time_mean"] = m.groups()
    d["proto"] = first_match(r"Application protocol: (\S+)", text)
    return d


def record(args):
    text = sys.stdin.read()
    d = {"server": args.server, "phase": args.phase, "rc": args.rc, "cmd": args.cmd}
    d.update(parse_sets(args.set))
    if args.h2load:
        d.update(parse_h2load(text))
        d["output_tail"] = text[-1500:]
    else:
        client = None
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    client = json.loads(line)
                    break
                except ValueError:
                    pass
        d["client"] = client
    print(json.dumps(d))


# ---------------------------------------------------------------- perf

FRAME = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s+\(([^()]*)\)\s*$")


def perf_samples(lines):
    """(pid, [(sym, dso), ...leaf first]) per sample of `perf script -F pid,ip,sym,dso`."""
    pid, frames = None, []
    for line in lines:
        if not line.strip():
            if pid is not None:
                yield pid, frames
            pid, frames = None, []
        elif not line.startswith("\t"):  # header: the pid, right-aligned
            if pid is not None:
                yield pid, frames
            tok = line.split()
            pid, frames = (int(tok[0]) if tok and tok[0].isdigit() else -1), []
        else:
            m = FRAME.match(line)
            if m:
                frames.append((m.group(2), os.path.basename(m.group(3))))
    if pid is not None:
        yield pid, frames


def perfagg(args):
    """Apache's share of `perf record -a -g` samples, picked by pid (perf
    report's --pid/--comm filters drop kernel samples)."""
    pids = {int(p) for p in args.pids.split(",") if p.strip().isdigit()}
    total = ours = 0
    dso, sym, incl, sysc = {}, {}, {}, {}

    def add(d, k):
        d[k] = d.get(k, 0) + 1

    for pid, frames in perf_samples(sys.stdin):
        total += 1
        if pid not in pids or not frames:
            continue
        ours += 1
        leaf_sym, leaf_dso = frames[0]
        kernel = leaf_dso.startswith("[kernel")
        add(dso, "kernel" if kernel else leaf_dso)
        add(sym, f"{leaf_sym}  [{'kernel' if kernel else leaf_dso}]")
        seen = set()
        for fs, fd in frames:
            if fs.startswith("[unknown]") or re.fullmatch(r"0x[0-9a-f]+|[0-9a-f]+", fs):
                continue
            if fs not in seen:
                seen.add(fs)
                add(incl, fs)
        # where the sample is, by system call
        where = None
        if not kernel:
            where = "user space: " + leaf_dso
        else:
            for fs, _ in frames:
                m = re.fullmatch(r"__(?:x64|ia32)_sys_(\w+)|__do_sys_(\w+)|ksys_(\w+)"
                                 r"|do_(writev|readv|epoll_wait|futex|sys_poll|sendfile)", fs)
                if m:
                    where = "syscall " + next(g for g in m.groups() if g)
                    break
                if "page_fault" in fs:
                    where = "kernel: page fault"
                    break
            if where is None:
                names = " ".join(f for f, _ in frames)
                if "schedule" in names or "finish_task_switch" in names:
                    where = "kernel: scheduler (preemption, return to user space)"
                elif "irq" in names or "softirq" in names:
                    where = "kernel: interrupts / softirq"
                else:
                    where = "kernel: other"
        add(sysc, where)

    def dump(name, d, limit, head):
        with open(os.path.join(args.out, name), "w") as f:
            f.write(head + "\n")
            for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:limit]:
                f.write(f"{100.0 * v / ours:6.1f}%  {k}\n")

    if not ours:
        print(f"perfagg: no samples of pids {sorted(pids)} among {total}", file=sys.stderr)
        return
    head = (f"# {ours} samples of the Apache tree = {100.0 * ours / total:.1f}% of all "
            f"{total} samples of the machine; % below are of Apache's samples")
    dump("perf-dso.txt", dso, 15, head)
    dump("perf-sym.txt", sym, 40, head)
    dump("perf-children.txt", incl, 70, head + " (inclusive: the symbol or its callees)")
    dump("perf-syscalls.txt", sysc, 25, head + " (by the system call the sample is in)")


# ---------------------------------------------------------------- report

def fmt(v, nd=0, unit=""):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if nd == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{nd}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0 or a < 0 or b < 0:
        return None
    return a / b


def ctx_delta(d):
    try:
        v0, n0 = (int(x) for x in str(d["ctxsw_before"]).split())
        v1, n1 = (int(x) for x in str(d["ctxsw_after"]).split())
        return v1 - v0, n1 - n0
    except (KeyError, ValueError):
        return None


def others_load(d):
    """% of one core used by processes other than the server and the client
    during the run (None when not recorded)."""
    c = d.get("client") or {}
    try:
        other = d["sys_busy_s"] - d["server_cpu_s_run"] - c["client_cpu_s"]
        return max(0.0, 100.0 * other / d["wall_s"])
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def client_bound(c):
    """The single-threaded client was (nearly) saturated during the run."""
    try:
        return c["client_cpu_s"] > 0.7 * c["publish_s"]
    except (KeyError, TypeError):
        return False


def ladder_row(d):
    """Derived figures of one ladder run (or None when the client gave nothing)."""
    c = d.get("client")
    if not c:
        return None
    ready = c.get("ready") or 0
    pss_idle = d.get("pss_kib_idle")
    pss_conn = c.get("server_pss_kib_connected", -1)
    row = {
        "n": c["n"], "ready": ready, "failed": c.get("failed"), "rc": d["rc"],
        "delivered": c.get("delivered"), "expected": c.get("expected"),
        "lost": c.get("lost"), "ooo": c.get("out_of_order"),
        "p50": c.get("lat_p50_ms"), "p99": c.get("lat_p99_ms"), "max": c.get("lat_max_ms"),
        "threads": c.get("server_threads_connected"), "threads_idle": d.get("threads_idle"),
        "procs": c.get("server_procs"),
        "client_cpu": c.get("client_cpu_s"), "timed_out": c.get("timed_out"),
        "others": others_load(d),
        "rec": d,
    }
    for k in ("p50", "p99", "max"):
        if row[k] is not None and row[k] < 0:
            row[k] = None
    # memory: the marginal Pss of the connected subscribers (shared pages
    # counted once), measured from the server's own idle Pss just before the run
    if ready and isinstance(pss_idle, int) and pss_idle > 0 and pss_conn > 0:
        row["pss_per_sub"] = (pss_conn - pss_idle) / ready
        row["pss_total_per_sub"] = pss_conn / ready
        row["mem_src"] = "Pss"
    elif ready and c.get("server_rss_kib_connected", -1) > 0:
        row["pss_per_sub"] = (c["server_rss_kib_connected"] - c["server_rss_kib_idle"]) / ready
        row["pss_total_per_sub"] = c["server_rss_kib_connected"] / ready
        row["mem_src"] = "RSS"
    row["rss_per_sub"] = ((c["server_rss_kib_connected"] - c["server_rss_kib_idle"]) / ready
                          if ready and c.get("server_rss_kib_connected", -1) > 0 else None)
    sched = c.get("server_sched_us_per_msg", -1)
    stat = c.get("server_cpu_us_per_msg", -1)
    row["cpu_us"] = sched if sched is not None and sched >= 0 else (stat if stat >= 0 else None)
    cs = ctx_delta(d)
    if cs and c.get("delivered"):
        row["cs_per_sub"] = (cs[0] + cs[1]) / ready if ready else None
    return row


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def verdict(value, limit, higher_is_better=False):
    """'met' / 'not met' plus the margin, for value vs limit."""
    if value is None or limit is None:
        return "n/a"
    met = value >= limit if higher_is_better else value <= limit
    margin = value / limit if limit else float("inf")
    return ("**met**" if met else "**not met**") + f" ({margin:.2f}× the bound)"


def plot_svg(ladder, svg):
    if not shutil.which("gnuplot"):
        return "gnuplot not found: no plot"
    with tempfile.TemporaryDirectory() as tmp:
        plots = []
        for s in ladder:
            pts = sorted((r["n"], r["p99"]) for r in ladder.get(s, {}).values()
                         if r and r["p99"] is not None)
            if not pts:
                continue
            path = os.path.join(tmp, s + ".dat")
            with open(path, "w") as f:
                for n, p in pts:
                    f.write(f"{n} {p}\n")
            plots.append(f"'{path}' using 1:2 with linespoints lw 2 pt 7 title '{s}'")
        if not plots:
            return "no data to plot"
        ns = sorted({r["n"] for s in ladder.values() for r in s.values() if r})
        script = "\n".join([
            "set terminal svg size 720,440 dynamic noenhanced font 'sans,12' background '#ffffff'",
            f"set output '{svg}'",
            "set title 'Fan-out latency p99 vs held subscribers (h2c, one connection each)'",
            "set xlabel 'held subscribers N'",
            "set ylabel 'p99 delivery latency (ms)'",
            "set logscale y",
            "set grid",
            "set key top left",
            "set xtics (" + ", ".join(f"'{n:,}' {n}" for n in ns) + ")",
            f"set xrange [0:{max(ns) * 1.05:.0f}]",
            "plot " + ", ".join(plots),
            "",
        ])
        gp = os.path.join(tmp, "p99.gp")
        with open(gp, "w") as f:
            f.write(script)
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            return "gnuplot failed: " + r.stderr.strip()[:300]
    return None


def shown_servers(m, recs):
    """The servers of the report, in SERVERS order: those the run asked for
    (run.sh records SERVERS in the meta line) and any with records (older
    results have no list)."""
    asked = {LABELS.get(x, x) for x in str(m.get("servers", "")).split()}
    have = {r.get("server") for r in recs if r.get("phase") != "meta"}
    return [s for s in SERVERS if s in asked or s in have]


def cmp_cell(a, b, nd=1):
    """'shm → redis (ratio×)' for one figure."""
    if a is None and b is None:
        return "–"
    r = ratio(b, a)
    return f"{fmt(a, nd)} → {fmt(b, nd)}" + (f" ({r:.2f}×)" if r is not None else "")


def redis_sched_per_delivery(row_rec):
    """redis-server's CPU (µs, schedstat, over the whole client run) per
    delivered message of one ladder record, or None."""
    c = row_rec.get("client") or {}
    try:
        return 1e6 * row_rec["redis_sched_s_run"] / c["delivered"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def redis_section(m, ns, ladder, sus, best, hl):
    L = ["## Redis store vs shm", ""]
    L.append("mod_h2chat-redis is mod_h2chat with `H2ChatStore redis`: the same Apache, "
             "configuration (`bench/httpd.conf.in`, `-DBENCH_REDIS`) and module build, and a "
             f"redis-server {m.get('redis', '?')} on loopback that `bench/run.sh` starts with "
             "each Apache and stops with it (empty, `--save '' --appendonly no`, a fresh stream "
             "key). A POST runs one Lua script in Redis (`INCR` + `XADD`) where the shm store "
             "takes the segment's lock; one reader thread per server follows the stream "
             "(`XREAD BLOCK`) and puts each message into the local ring, from where delivery is "
             "the same code as with shm. **redis-server's CPU and memory are counted in "
             "mod_h2chat-redis's figures everywhere in this report** (the load client samples "
             "both process trees: it is part of the deployment); the \"redis-server\" columns "
             "show its part alone. Each cell is shm → Redis (Redis / shm), from the same run.")
    L.append("")
    rows = []
    for n in ns:
        h, r = ladder.get(H2CHAT, {}).get(n), ladder.get(H2REDIS, {}).get(n)
        if not h and not r:
            continue
        h, r = h or {}, r or {}
        rrec = r.get("rec") or {}
        rpss = rrec.get("redis_pss_kib_end")
        rows.append([f"{n:,}", cmp_cell(h.get("p50"), r.get("p50")),
                     cmp_cell(h.get("p99"), r.get("p99")),
                     cmp_cell(h.get("cpu_us"), r.get("cpu_us")),
                     fmt(redis_sched_per_delivery(rrec), 1),
                     cmp_cell(h.get("pss_per_sub"), r.get("pss_per_sub")),
                     cmp_cell(h.get("pss_total_per_sub"), r.get("pss_total_per_sub")),
                     fmt(rpss / 1024, 1) if isinstance(rpss, (int, float)) and rpss > 0 else "–"])
    if rows:
        L.append("Fan-out ladder (K = %s messages at %s msg/s):" % (m.get("k", "?"), m.get("rate", "?")))
        L.append("")
        L.append(md_table(["N", "p50 ms", "p99 ms", "CPU µs/delivery", "of it redis-server µs",
                           "ΔPss/sub KiB", "total Pss/sub KiB", "redis-server Pss MiB"], rows))
        L.append("")
        L.append("\"CPU µs/delivery\": the server's CPU (Apache, and redis-server for Redis) from "
                 "the first POST to the end, per delivered message, as in the ladder tables; "
                 "\"of it redis-server\": redis-server's CPU over the whole client run (schedstat) "
                 "per delivered message. \"redis-server Pss\": its Pss at the end of the run "
                 "(within the total Pss; it does not grow with subscribers, who never talk to "
                 "Redis).")
        L.append("")
    else:
        L.append("No ladder run of both in this session.")
        L.append("")
    if sus.get(H2CHAT) or sus.get(H2REDIS):
        L.append(f"Sustained rate at N = {m.get('sustain_n', '?')}: highest rate kept up with "
                 f"shm **{fmt(best.get(H2CHAT), 0)} msg/s**, Redis "
                 f"**{fmt(best.get(H2REDIS), 0)} msg/s** (table above).")
        L.append("")
    rows = []
    base = None
    for s in (H2CHAT, H2REDIS):
        r = hl.get((s, "post"))
        if not r:
            continue
        ok = r.get("succeeded") or 0
        cpu = r.get("server_cpu_s_run")
        red = r.get("redis_sched_s_run")
        cpu_us = 1e6 * cpu / ok if cpu is not None and ok else None
        red_us = 1e6 * red / ok if red is not None and ok else None
        rps = r.get("req_per_s")
        if s == H2CHAT:
            base = (rps, cpu_us)
        rel = ""
        if s == H2REDIS and base:
            rr, rc = ratio(rps, base[0]), ratio(cpu_us, base[1])
            rel = f"req/s {fmt(rr, 2)}×, CPU {fmt(rc, 2)}×"
        rows.append([s, fmt(rps, 0), str(r.get("req_time_mean", "?")), fmt(cpu_us, 1),
                     fmt(red_us, 1) if s == H2REDIS else "–", rel or "–"])
    if rows:
        L.append(f"POST throughput (h2load, as above: {m.get('h2load_n', '?')} POSTs, "
                 "-c 10 -m 10, no subscriber):")
        L.append("")
        L.append(md_table(["server", "POST req/s", "mean time", "CPU µs/POST",
                           "of it redis-server µs", "Redis / shm"], rows))
        L.append("")
        L.append("\"CPU µs/POST\": the server's CPU over the h2load run (Apache from "
                 "`/proc/PID/stat`, 10 ms ticks, plus redis-server for Redis) per succeeded "
                 "POST; \"of it redis-server\" from its schedstat.")
        L.append("")
    return L


def check(args):
    """The smoke's verdict: every server started, every ladder and
    sustained run delivered everything with no failed subscriber, every
    h2load run answered 2xx to all. (p99 bounds are not checked: the smoke
    runs on a busy CI machine.)"""
    recs = [json.loads(x) for x in open(args.inp) if x.strip()]
    m = next((r for r in recs if r.get("phase") == "meta"), {})
    bad, runs = [], 0
    for r in recs:
        ph = r.get("phase")
        if ph == "meta":
            continue
        runs += 1
        what = f"{r.get('server')} {ph} ({r.get('cmd', '')[:60]})"
        if r.get("rc") in (98, 99):
            bad.append(f"{what}: not run (rc {r['rc']})")
        elif ph in ("ladder", "sustained"):
            c = r.get("client") or {}
            if r.get("rc") != 0 or c.get("lost") or c.get("failed"):
                bad.append(f"{what}: rc {r.get('rc')}, lost {c.get('lost')}, "
                           f"failed {c.get('failed')}")
        elif ph in ("post", "static"):
            if r.get("rc") != 0 or r.get("status_2xx") != r.get("total"):
                bad.append(f"{what}: rc {r.get('rc')}, {r.get('status_2xx')} 2xx of "
                           f"{r.get('total')}")
    asked = [LABELS.get(x, x) for x in str(m.get("servers", "")).split()]
    for s in asked:
        if not any(r.get("server") == s for r in recs):
            bad.append(f"{s}: no run recorded")
    for b in bad:
        print("check: " + b, file=sys.stderr)
    print(f"check: {runs} runs of {', '.join(asked) or '?'}"
          + (f"; skipped: {m['skipped']}" if m.get("skipped") else "")
          + (f": {len(bad)} FAILED" if bad else ": all passed"), file=sys.stderr)
    sys.exit(1 if bad else 0)


def target_rows(mine, ns, ladder, sus, best, best_p99, hl, m, top_rate, p99_max):
    """The issue's targets for one of mod_h2chat's servers (rows of the
    targets table)."""
    rows = []
    for n in ns:
        h = ladder.get(mine, {}).get(n)
        for peer in (NCHAN, SEED):
            p = ladder.get(peer, {}).get(n)
            if h and p and h["p99"] is not None and p["p99"] is not None:
                limit = 0.5 * p["p99"]
                rows.append([mine, f"p99 ≤ 0.5 × {peer}'s (N = {n:,})",
                             f"{h['p99']:,.1f} ms vs bound {limit:,.1f} ms "
                             f"(ratio {h['p99'] / p['p99']:.2f}×)",
                             verdict(h["p99"], limit)])
    for peer in (NCHAN, SEED):
        if sus.get(mine) and sus.get(peer):
            limit = 2 * best[peer]
            hb = best[mine]
            note = ""
            if top_rate and hb >= top_rate:
                note = " (kept up with every rate tried: a lower bound)"
            if top_rate and best[peer] >= top_rate:
                v = ("**undetermined**: the peer kept up with every rate tried; "
                     "extend RATES to separate them")
            elif limit == 0:
                v = "**met** (the peer kept up with no rate)" if hb > 0 else "n/a (neither kept up)"
            else:
                v = verdict(hb, limit, higher_is_better=True)
            bp = best_p99.get(mine)
            if hb and bp is not None and bp > 0.9 * p99_max:
                note += (f" (marginal: at {hb:g} msg/s the p99 was {bp:,.0f} ms, "
                         f"within 10 % of the {p99_max:g} ms bound)")
            rows.append([mine, f"sustained rate ≥ 2 × {peer}'s (N = {m.get('sustain_n', '?')})",
                         f"{hb:g} vs bound {limit:g} msg/s{note}", v])
    for n in ns:
        h = ladder.get(mine, {}).get(n)
        p = ladder.get(NCHAN, {}).get(n)
        if h and p and h.get("pss_per_sub") is not None and p.get("pss_per_sub") is not None:
            rows.append([mine, f"memory per subscriber ≤ nchan's (N = {n:,})",
                         f"{h['pss_per_sub']:,.1f} vs {p['pss_per_sub']:,.1f} KiB ΔPss "
                         f"(total Pss/N {h['pss_total_per_sub']:,.1f} vs "
                         f"{p['pss_total_per_sub']:,.1f})",
                         verdict(h["pss_per_sub"], p["pss_per_sub"])])
    post, static = hl.get((mine, "post")), hl.get((H2CHAT, "static"))
    if post and static and post.get("req_per_s") and static.get("req_per_s"):
        limit = 0.8 * static["req_per_s"]
        rows.append([mine, "POST throughput ≥ 0.8 × Apache static",
                     f"{post['req_per_s']:,.0f} vs bound {limit:,.0f} req/s "
                     f"({post['req_per_s'] / static['req_per_s']:.2f}× static)",
                     verdict(post["req_per_s"], limit, higher_is_better=True)])
    return rows


def report(args):
    recs = []
    with open(args.inp) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    metas = [r for r in recs if r.get("phase") == "meta"]
    m = metas[0] if metas else {}
    ladder_all = {s: {} for s in SERVERS}
    for r in recs:
        if r.get("phase") == "ladder":
            row = ladder_row(r)
            n = row["n"] if row else r.get("n")
            ladder_all.setdefault(r["server"], {}).setdefault(n, []).append(row)
    # per server and N, the pass with the lowest p99 among the complete ones
    ladder = {}
    for srv, byn in ladder_all.items():
        ladder[srv] = {}
        for n, rows in byn.items():
            good = [x for x in rows if x and x["p99"] is not None]
            complete = [x for x in good if x["lost"] == 0 and not x["failed"]]
            pick = complete or good
            ladder[srv][n] = min(pick, key=lambda x: x["p99"]) if pick else None
    reps = max((len(v) for byn in ladder_all.values() for v in byn.values()), default=1)
    ns = sorted({n for s in ladder.values() for n in s})
    shown = shown_servers(m, recs)
    redis_on = H2REDIS in shown

    L = []
    L.append("# Fan-out benchmark: mod_h2chat"
             + (" (`H2ChatDirect`, through mod_http2, and with the Redis store)"
                if redis_on and H2DIRECT in shown else
                " (shared-memory and Redis store)" if redis_on else "")
             + " vs the seed (Node.js) vs nginx+nchan")
    L.append("")
    L.append("Generated by `bench/report.py` from `results.jsonl` (one JSON line per run, "
             "kept beside this file). Every figure below was measured in the same session, "
             "on the same machine, with the same load client (`bench/h2c-fanout`); client and "
             "servers share the cores.")
    L.append("")
    L.append("## Setup")
    L.append("")
    L.append(f"- date: {m.get('date', '?')}")
    L.append(f"- machine: {m.get('nproc', '?')} cores ({m.get('cpu', '?')}), "
             f"{m.get('mem_gib', '?')} GiB memory, Linux {m.get('kernel', '?')}, "
             f"open files hard limit {m.get('nofile_hard', '?')}, pid_max {m.get('pid_max', '?')}")
    L.append(f"- servers: Apache {m.get('apache', '?')} (mpm_event, mod_http2) + mod_h2chat; "
             f"nginx {m.get('nginx', '?')} + nchan {m.get('nchan', '?')} (2 workers); "
             f"Node.js {m.get('node', '?')} (seed peer, one process); h2load {m.get('h2load', '?')}"
             + (f"; mod_h2chat-redis: the same Apache with `H2ChatStore redis` and redis-server "
                f"{m.get('redis', '?')} (see [Redis store vs shm](#redis-store-vs-shm))"
                if redis_on else "")
             + ("; mod_h2chat-direct: the same Apache and module with `H2ChatDirect /msgs`: "
                "h2c connections are served by the module's own HTTP/2 loop (one thread per "
                "child, no mod_http2 on the held streams)" if H2DIRECT in shown else ""))
    if m.get("skipped"):
        L.append(f"- **not run: {m['skipped']}** (the peers' directory `{m.get('peers', '?')}` "
                 "is missing, or node/nginx is not installed)")
    L.append(f"- command: `{m.get('cmd', '?')}` (nice {m.get('nice', '?')} for the script, "
             "the servers and the client)"
             + "".join(f"; then `{x.get('cmd', '?')}` on {x.get('date', '?')}, appended"
                       for x in metas[1:]))
    builds = []
    for r in recs:
        b = r.get("module")
        if r.get("server") in (H2DIRECT, H2CHAT, H2REDIS) and b and b != "-" and b not in builds:
            builds.append(b)
    L.append(f"- repository at `{m.get('git_head', '?')}`; mod_h2chat.so sha256 "
             + (", ".join(f"`{b}…`" for b in builds) if builds else f"`{m.get('module_sha_start', '?')}…`")
             + (" (the module was rebuilt by other work in the repository during the run: "
                "each record in results.jsonl names the build its Apache loaded)" if len(builds) > 1 else ""))
    L.append(f"- Apache sizing (`bench/httpd.conf.in`): {m.get('apache_children', '?')} children × "
             f"{m.get('apache_threads_per_child', '?')} threads (`ThreadsPerChild` = `H2MaxWorkers`), "
             f"`H2ChatMaxSubscribers {m.get('apache_max_subscribers', '?')}`; each held h2 stream "
             "keeps an h2 worker and an MPM thread"
             + ("; mod_h2chat-direct: 2 children × 64 threads (its held streams take no "
                "thread)" if H2DIRECT in shown else ""))
    L.append(f"- ladder: N = {m.get('ladder', '?')}, K = {m.get('k', '?')} messages at "
             f"{m.get('rate', '?')} msg/s, one h2c connection per subscriber, a fresh server "
             "per N; mod_h2chat NDJSON, seed its JSON documents, nchan SSE (`--sse`)"
             + (f"; {reps} passes over the whole ladder (servers interleaved), the table shows "
                "each server's pass with the lowest p99 (the machine is shared, and other work "
                "only ever makes a run slower), the p99 of every pass in the last column"
                if reps > 1 else ""))
    L.append("")
    L.append("Memory per subscriber is **ΔPss / ready**: the server tree's Pss (from "
             "`/proc/PID/smaps_rollup`, shared pages divided among the processes sharing them, so "
             "Apache's and nginx's children are not counted several times) with all subscribers "
             "connected, minus its Pss just before the client started, divided by the subscribers "
             "that got a 200. Apache's idle Pss already contains its pre-started MPM threads "
             "(sized for the largest N), so ΔPss is what each subscriber adds on top; "
             "\"total\" is the whole Pss / N. CPU per message is the server tree's CPU time "
             "(`/proc/*/task/*/schedstat`, ns resolution) from the first POST to the end of the "
             "run, divided by the messages delivered. Latency is receive time − send time "
             "(both CLOCK_REALTIME, one machine), per (subscriber, message), nearest-rank "
             "percentiles.")
    L.append("")

    # ---- ladder tables
    L.append("## Fan-out ladder")
    L.append("")
    for n in ns:
        L.append(f"### N = {n:,}")
        L.append("")
        rows = []
        for s in shown:
            r = ladder.get(s, {}).get(n)
            if r is None:
                rows.append([s] + ["not run" if n not in ladder.get(s, {}) else "failed"] + ["–"] * 11)
                continue
            rows.append([
                s,
                f"{r['ready']:,}/{n:,}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
                f"{r['delivered']:,}/{r['expected']:,}",
                fmt(r["p50"], 1), fmt(r["p99"], 1), fmt(r["max"], 1),
                fmt(r.get("pss_per_sub"), 1) + (f" ({r['mem_src']})" if r.get("mem_src") == "RSS" else ""),
                fmt(r.get("pss_total_per_sub"), 1),
                fmt(r["cpu_us"], 1),
                fmt(r["threads"]),
                fmt(r.get("cs_per_sub"), 1),
                fmt(r["others"], 0, " %"),
                ", ".join(fmt(x["p99"], 0) if x else "failed"
                          for x in ladder_all.get(s, {}).get(n, [])),
            ])
        L.append(md_table(["server", "ready", "delivered/expected", "p50 ms", "p99 ms", "max ms",
                           "ΔPss/sub KiB", "total Pss/sub KiB", "CPU µs/msg", "threads",
                           "ctx sw/sub", "others' CPU", "p99 of each pass"], rows))
        L.append("")
        ratios = []
        for mine in (H2DIRECT, H2CHAT):
            h = ladder.get(mine, {}).get(n)
            for peer in (SEED, NCHAN):
                p = ladder.get(peer, {}).get(n)
                if h and p:
                    rp = ratio(h["p99"], p["p99"])
                    rm = ratio(h.get("pss_per_sub"), p.get("pss_per_sub"))
                    rc = ratio(h["cpu_us"], p["cpu_us"])
                    ratios.append(f"{mine} / {peer}: p99 {fmt(rp, 2)}×, memory per subscriber "
                                  f"{fmt(rm, 2)}×, CPU per message {fmt(rc, 2)}×")
        if ratios:
            L.append("Ratios: " + "; ".join(ratios) + ".")
            L.append("")
        notes = []
        for s in shown:
            r = ladder.get(s, {}).get(n)
            if r and (r["lost"] or r["failed"] or r["timed_out"] or r["rc"] not in (0, None)):
                notes.append(f"{s}: client exit {r['rc']}, lost {r['lost']}, failed {r['failed']}"
                             + (", timed out" if r["timed_out"] else ""))
            if r and r.get("ooo"):
                notes.append(f"{s}: {r['ooo']:,} out-of-order deliveries (two POSTs in flight "
                             "at once on the publisher's connection reached the server in the "
                             "other order; each subscriber still got the server's order)")
        if notes:
            L.append("Notes: " + "; ".join(notes) + ".")
            L.append("")
    L.append("\"ctx sw/sub\": voluntary + involuntary context switches of all the server's "
             "threads over the whole client run (connect, settle, publish), per subscriber. "
             "\"others' CPU\": CPU used during the run by processes other than the server and "
             "the client (from `/proc/stat`), in % of one core. The script waits (bounded) for other "
             "load to drop below 15 % before each run; when it runs with a negative nice value "
             "(see the command), other processes get mostly the CPU the benchmark leaves idle, "
             "so a high figure there is a shared machine, not necessarily a disturbed run.")
    L.append("")
    if args.svg:
        err = plot_svg({s: ladder.get(s, {}) for s in shown}, args.svg)
        if err:
            L.append(f"(p99 plot: {err})")
        else:
            L.append(f"![p99 vs N]({os.path.basename(args.svg)})")
        L.append("")

    # ---- sustained
    sus = {s: [] for s in SERVERS}
    for r in recs:
        if r.get("phase") == "sustained":
            sus.setdefault(r["server"], []).append(r)
    p99_max = float(m.get("p99_max_ms", 1000))
    rates_tried = str(m.get("rates", "")).split()
    top_rate = max((float(x) for x in rates_tried), default=None)
    best, best_p99 = {}, {}
    L.append(f"## Sustained rate at N = {m.get('sustain_n', '?')}")
    L.append("")
    tries = m.get("sustain_tries", 1)
    L.append(f"Rates tried in order ({', '.join(rates_tried)} msg/s), K = min(10 × rate, "
             f"{m.get('kcap', '?')}) messages each, a fresh server per attempt, stopping at the "
             f"first failed rate. A run keeps up when every subscriber connected, nothing was "
             f"lost, and p99 ≤ {p99_max:g} ms"
             + (f"; a rate counts as failed when {tries} attempts in a row did not keep up" if tries > 1 else "")
             + ".")
    L.append("")
    rows = []
    for s in shown:
        ok_rates = []
        for r in sus.get(s, []):
            c = r.get("client") or {}
            ok = (r["rc"] == 0 and c.get("lost") == 0 and c.get("failed") == 0
                  and 0 <= c.get("lat_p99_ms", -1) <= p99_max)
            if ok:
                ok_rates.append(float(c.get("rate", 0)))
            rows.append([s, fmt(c.get("rate"), 0), fmt(c.get("k"), 0),
                         f"{c.get('delivered', 0):,}/{c.get('expected', 0):,}",
                         fmt(c.get("lat_p50_ms"), 1), fmt(c.get("lat_p99_ms"), 1),
                         fmt(c.get("lat_max_ms"), 1), fmt(c.get("server_sched_us_per_msg"), 1),
                         fmt(c.get("client_cpu_s"), 2)
                         + (" ⚠" if client_bound(c) else ""),
                         fmt(others_load(r), 0, " %"),
                         "yes" if ok else "**no**"])
        best[s] = max(ok_rates) if ok_rates else 0.0
        best_p99[s] = max((float((r.get("client") or {}).get("lat_p99_ms", -1))
                           for r in sus.get(s, [])
                           if float((r.get("client") or {}).get("rate", -1)) == best[s]
                           and r["rc"] == 0), default=None)
    L.append(md_table(["server", "rate msg/s", "K", "delivered/expected", "p50 ms", "p99 ms",
                       "max ms", "CPU µs/msg", "client CPU s", "others' CPU", "keeps up"], rows))
    L.append("")
    if any(client_bound(r.get("client") or {}) for v in sus.values() for r in v):
        L.append("⚠: the load client (one thread, on the same two cores) used more than 70 % of "
                 "a core over the publish phase: at that rate the client competes with the server "
                 "for the cores and comes close to its own limit, so the figure is a lower bound "
                 "of what the server alone could do.")
        L.append("")
    if any(sus.get(s) for s in shown):
        L.append("Highest sustained rate: " + "; ".join(
            f"{s} **{fmt(best[s], 0)} msg/s**"
            + (" (top of the search)" if top_rate and best[s] >= top_rate else "")
            for s in shown if s in best and sus.get(s)) + ".")
        L.append("")

    # ---- h2load
    hl_all = {}
    for r in recs:
        if r.get("phase") in ("post", "static"):
            hl_all.setdefault((r["server"], r["phase"]), []).append(r)
    hl = {}  # the median run by req/s
    for key, runs in hl_all.items():
        runs = sorted(runs, key=lambda r: r.get("req_per_s") or 0)
        hl[key] = runs[(len(runs) - 1) // 2]
    L.append("## POST throughput (h2load)")
    L.append("")
    reps = m.get("h2load_reps", 1)
    L.append(f"`h2load -n {m.get('h2load_n', '?')} -c 10 -m 10` over h2c: POST of a 43-byte "
             "JSON body (`-d body.json -H 'Content-Type: application/json'`) to `/msgs` with no "
             "subscriber connected, and GET of a 14-byte static file from the same Apache"
             + (f"; {reps} runs each, the median shown (all runs in the last column)" if reps and reps > 1 else "")
             + ". h2load's req/s counts the requests that succeeded.")
    L.append("")
    rows = []
    for key in [(H2DIRECT, "post"), (H2CHAT, "post"), (H2CHAT, "static"), (H2REDIS, "post"),
                (SEED, "post"), (NCHAN, "post")]:
        r = hl.get(key)
        if not r:
            continue
        what = "POST /msgs" if key[1] == "post" else "GET /tiny.txt (static)"
        rows.append([key[0], what, fmt(r.get("req_per_s"), 0),
                     f"{r.get('succeeded', '?')}/{r.get('total', '?')}",
                     str(r.get("status_2xx", "?")), str(r.get("req_time_mean", "?")),
                     str(r["rc"]),
                     ", ".join(fmt(x.get("req_per_s"), 0) for x in hl_all[key])])
    L.append(md_table(["server", "request", "req/s", "succeeded", "2xx", "mean time", "h2load rc",
                       "all runs req/s"], rows))
    L.append("")
    short = [k[0] for k, r in hl.items() if r.get("succeeded") is not None and r.get("total")
             and r["succeeded"] < r["total"]]
    if short:
        L.append("Not every request succeeded for " + ", ".join(sorted(set(short))) + ". For nchan "
                 "this is nginx's `keepalive_requests` (default 1000 in nginx ≥ 1.19.10, also for "
                 "HTTP/2): it closes each connection after 1000 requests and h2load does not "
                 "reconnect, so 10 connections make 10 × 1000 requests; the rest count as failed "
                 "and req/s is the rate of the 10,000 that ran.")
        L.append("")

    # ---- Redis store vs shm
    if redis_on:
        L.extend(redis_section(m, ns, ladder, sus, best, hl))

    # ---- targets
    L.append("## Targets of the issue")
    L.append("")
    L.append("For mod_h2chat's two ways of serving the held h2c streams, each against the "
             "peers: `H2ChatDirect` (the module's own HTTP/2 loop) and through mod_http2 "
             "(the handler, as for TLS and HTTP/1.1 clients), both with the default store "
             "(shared memory)"
             + ("; the Redis store's cost is in the section above" if redis_on else "") + ".")
    L.append("")
    rows = []
    for mine in (H2DIRECT, H2CHAT):
        rows += target_rows(mine, ns, ladder, sus, best, best_p99, hl, m, top_rate, p99_max)
    L.append(md_table(["mod_h2chat", "target", "measured", "verdict"], rows))
    L.append("")
    L.append("\"× the bound\": the measured value divided by the target's bound (≤ 1 is "
             "needed for the ≤ targets, ≥ 1 for the ≥ targets). POST throughput is compared "
             "with the same Apache serving a static file through mod_http2 (the mod_h2chat "
             "server's run).")
    L.append("")

    # ---- where the time goes
    prof = [r for r in recs if str(r.get("phase", "")).startswith("profile-")]
    notes = None
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            notes = f.read().strip()
    if prof or notes:
        L.append("## Where the time goes")
        L.append("")
        if notes:
            L.append(notes)
            L.append("")
        if prof:
            L.append("### Profile runs (this session)")
            L.append("")
            rows = []
            for r in prof:
                c = r.get("client") or {}
                cs = ctx_delta(r)
                dl = c.get("delivered") or 0
                win = r.get("window_s") or 0
                per = dl  # the window holds the whole publishing and delivery
                cpu = r.get("server_cpu_s_window")
                rows.append([r["phase"], fmt(c.get("n")), fmt(c.get("k")), fmt(c.get("rate")),
                             f"{dl:,}/{c.get('expected', 0):,}", fmt(c.get("lat_p50_ms"), 1),
                             fmt(c.get("lat_p99_ms"), 1), fmt(c.get("server_sched_us_per_msg"), 1),
                             fmt(c.get("server_threads_connected")),
                             fmt(win, 1),
                             (f"{cpu / win:.2f} cores, {1e6 * cpu / per:.0f} µs/delivery"
                              if cpu is not None and win and per else "–"),
                             (f"{cs[0]:,} + {cs[1]:,} = {(cs[0] + cs[1]) / per:.1f}/delivery"
                              if cs and per else "–")])
            L.append(md_table(["run", "N", "K", "rate", "delivered", "p50 ms", "p99 ms",
                               "CPU µs/msg (run)", "threads", "window s",
                               "Apache CPU in the window",
                               "Apache context switches in the window (vol + invol)"], rows))
            L.append("")
            L.append("The window runs from \"all subscribers connected\" to the client's end "
                     "(3 s settle, 5 s of publishing, the last deliveries); \"per delivery\" "
                     "divides the window's totals by the messages delivered. CPU from "
                     "`/proc/PID/stat` (utime + stime, 10 ms ticks), context switches from "
                     "`/proc/PID/task/*/status`.")
            L.append("")
        pdir = args.profile
        for fname, title in [
                ("perf-stat.txt", "`perf stat -a` (whole machine: Apache and the client) over the window"),
                ("perf-comm.txt", "`perf record -a -g`: share of all samples by command (swapper = idle)"),
                ("perf-syscalls.txt", "Apache's samples by the system call they are in"),
                ("perf-dso.txt", "Apache's samples by object (self time)"),
                ("perf-sym.txt", "Apache's top symbols (self time)"),
                ("perf-children.txt", "Apache's symbols with their callees (inclusive time)")]:
            path = os.path.join(pdir, fname) if pdir else None
            if path and os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path) as f:  # (perf stat's "sleep: Interrupt": it was stopped by SIGINT)
                    body = [ln.rstrip() for ln in f if ln.strip() and not ln.startswith("sleep:")][:40]
                L.append(f"{title} (`{os.path.join('profile', fname)}`):")
                L.append("")
                L.append("```")
                L.extend(body)
                L.append("```")
                L.append("")

    with open(args.out, "w") as f:
        f.write("\n".join(L).rstrip() + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("meta")
    a.add_argument("--cmd", default="")
    a.add_argument("--set", action="append")
    a = sub.add_parser("record")
    a.add_argument("--server", required=True)
    a.add_argument("--phase", required=True)
    a.add_argument("--rc", type=int, default=0)
    a.add_argument("--cmd", default="")
    a.add_argument("--set", action="append")
    a.add_argument("--h2load", action="store_true")
    a = sub.add_parser("perfagg")
    a.add_argument("--pids", required=True)
    a.add_argument("--out", required=True)
    a = sub.add_parser("check")
    a.add_argument("--in", dest="inp", required=True)
    a = sub.add_parser("report")
    a.add_argument("--in", dest="inp", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--svg")
    a.add_argument("--notes")
    a.add_argument("--profile")
    args = ap.parse_args()
    {"meta": meta, "record": record, "perfagg": perfagg, "report": report,
     "check": check}[args.what](args)


if __name__ == "__main__":
    main()
