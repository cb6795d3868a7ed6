#!/usr/bin/env python3
"""Turn run-standard.sh result folders into the generated part of docs/benchmarks.md.

    tools/bench/report.py [--doc docs/benchmarks.md] [--svg-dir docs/bench] [LABEL=DIR ...]

Without LABEL=DIR arguments it reads build/bench-results/limit and build/bench-results/roomcast.
Other labelled folders (e.g. socketio=build/bench-results/socketio) add a column to every table.
The label `limit` is the baseline of the ratios; `roomcast` is the server the goals are about.

Only the text between `<!-- BEGIN make bench -->` and `<!-- END make bench -->` is rewritten (the
markers are added after the intro if missing). Every number comes from the folders' JSON/text files;
every verdict is computed from them. SVG plots are copied to --svg-dir and linked.
Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

BEGIN = "<!-- BEGIN make bench -->"
END = "<!-- END make bench -->"
BASE = "limit"
SUBJECT = "roomcast"

# roomcast defaults the goals depend on (deploy/roomcast.example.toml); S6 pins the socket buffer.
ROOMCAST_MAX_QUEUE_BYTES = 1 << 20
ROOMCAST_RETRY_AFTER_S = 5.0

SCENARIO_FILES = ["S1", "S2", "S3-20", "S3-5", "S4", "S5-warmup", "S5", "S6", "S6-base", "S7", "S8", "S8-max"]


# ---- loading --------------------------------------------------------------------------------------

def read_kv(path: Path) -> dict:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


class Result:
    def __init__(self, label: str, folder: Path):
        self.label = label
        self.folder = folder
        self.runs: dict[str, dict] = {}
        for s in SCENARIO_FILES:
            p = folder / f"{s}.json"
            if p.exists():
                try:
                    self.runs[s] = json.loads(p.read_text())
                except json.JSONDecodeError as e:
                    print(f"report.py: {p}: {e}", file=sys.stderr)
        self.stats = None
        p = folder / "S5-stats.json"
        if p.exists() and p.read_text().strip():
            try:
                self.stats = json.loads(p.read_text())
            except json.JSONDecodeError:
                self.stats = None
        self.run = read_kv(folder / "run.txt")
        self.machine = read_kv(folder / "machine.txt")
        self.load: dict[str, dict[str, str]] = {}
        p = folder / "loadavg.txt"
        if p.exists():
            for line in p.read_text().splitlines():
                parts = line.split(None, 2)
                if len(parts) == 3:
                    self.load.setdefault(parts[0], {})[parts[1]] = " ".join(parts[2].split()[:3])
        self.sched: dict[str, tuple[float, float]] = {}
        p = folder / "schedstat.txt"
        if p.exists():
            for line in p.read_text().splitlines():
                f = line.split()
                if len(f) == 5:
                    self.sched[f[0]] = (float(f[2]), float(f[4]))
        p = folder / "commands.txt"
        self.commands = p.read_text() if p.exists() else ""
        # server flags per run id, from the "# <id> — server: …" lines of commands.txt
        self.server_cmd: dict[str, str] = {}
        for line in self.commands.splitlines():
            m = re.match(r"# (\S+) — server: (.*)$", line)
            if m:
                self.server_cmd[m.group(1)] = m.group(2)

    def get(self, run: str, key: str):
        r = self.runs.get(run)
        if r is None:
            return None
        return r.get(key)


# ---- formatting -----------------------------------------------------------------------------------

def fmt(v, prec: int = 0, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and prec == 0 and abs(v) < 10 and v != int(v):
        prec = 2
    s = f"{v:,.{prec}f}"
    return s + unit


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r) -> str:
    return "–" if r is None else f"{r:.2f}×"


MET, NOT_MET, NA = "met", "**not met**", "not measured"


def verdict(ok) -> str:
    return NA if ok is None else (MET if ok else NOT_MET)


def num(v):
    return v if isinstance(v, (int, float)) else None


# ---- derived metrics ------------------------------------------------------------------------------

def join_rate(r: Result, run="S1"):
    opened, t = num(r.get(run, "connections_opened")), num(r.get(run, "time_to_all_open_s"))
    return opened / t if opened and t else None


def planned(r: Result, run):
    p, d = num(r.get(run, "messages_published")), num(r.get(run, "publish_dropped_backlog"))
    return None if p is None else p + (d or 0)


def failures(r: Result, run):
    return num(r.get(run, "connect_failures_total"))


def rss_change_pct(r: Result, run):
    a, b = num(r.get(run, "server_rss_start_kib")), num(r.get(run, "server_rss_end_kib"))
    return None if not a or b is None else 100.0 * (b - a) / a


def rss_fresh_pct(r: Result):
    a, b = num(r.get("S5-warmup", "server_rss_start_kib")), num(r.get("S5", "server_rss_end_kib"))
    return None if not a or b is None else 100.0 * (b - a) / a


def pct_txt(p):
    return "–" if p is None else f"{p:+.1f} %"


def index_empty(stats):
    if not stats:
        return None
    idx = stats.get("index", {})
    return stats.get("connections") == 0 and all(v == 0 for v in idx.values())


def server_flag(r: Result, run: str, flag: str):
    m = re.search(re.escape(flag) + r"\s+(\S+)", r.server_cmd.get(run, ""))
    return m.group(1) if m else None


# ---- the document ---------------------------------------------------------------------------------

class Doc:
    def __init__(self, results: list[Result], svg_dir: Path, doc_path: Path):
        self.results = results
        self.by = {r.label: r for r in results}
        self.svg_dir = svg_dir
        self.doc_path = doc_path
        self.lines: list[str] = []
        self.summary: list[tuple[str, str, str, str, str, str]] = []  # scenario, goal, subject, base, ratio, verdict

    def w(self, s=""):
        self.lines.append(s)

    def base(self):
        return self.by.get(BASE)

    def subj(self):
        return self.by.get(SUBJECT)

    def others(self):
        return [r for r in self.results if r.label != BASE]

    def table(self, rows, runs=None, ratio_rows=()):
        """rows: (name, fn(result, run) -> value-or-str, prec). One column per (label, run)."""
        runs = runs or [None]
        cols = [(r, run) for run in runs for r in self.results]
        head = ["| |"] + [f" {r.label}{(', ' + run) if run and len(runs) > 1 else ''} |" for r, run in cols]
        has_ratio = bool(ratio_rows) and self.base() is not None
        ratio_cols = []
        if has_ratio:
            ratio_cols = [(o, run) for run in runs for o in self.others()]
            head += [f" {o.label} / {BASE}{(', ' + run) if run and len(runs) > 1 else ''} |" for o, run in ratio_cols]
        self.w("".join(head))
        self.w("|---" + "|---" * (len(cols) + len(ratio_cols)) + "|")
        for name, fn, prec in rows:
            cells = []
            for r, run in cols:
                v = fn(r, run)
                cells.append(fmt(v, prec))
            rc = []
            if has_ratio:
                for o, run in ratio_cols:
                    if name in ratio_rows:
                        a, b = fn(o, run), fn(self.base(), run)
                        rc.append(fmt_ratio(ratio(num(a), num(b))))
                    else:
                        rc.append("")
            self.w(f"| {name} | " + " | ".join(cells + rc) + " |")
        self.w()

    def goals(self, scenario, items):
        """items: (goal text, measured text, ok-or-None, subject value, base value, ratio)."""
        self.w("| goal (roomcast) | measured | verdict |")
        self.w("|---|---|---|")
        for goal, measured, ok, sv, bv, rt in items:
            self.w(f"| {goal} | {measured} | {verdict(ok)} |")
            flag = " (⚠ machine saturated)" if "⚠" in measured else ""
            self.summary.append((scenario, goal, sv, bv, rt, verdict(ok) + flag))
        self.w()

    def load_line(self, runs):
        parts = []
        for r in self.results:
            for run in runs:
                ld = r.load.get(run)
                if ld:
                    parts.append(f"{r.label} {run}: {ld.get('before', '?')} → {ld.get('after', '?')}")
        if parts:
            self.w("Load average (1/5/15 min) before → after: " + "; ".join(parts) + ".")
            self.w()
        parts = []
        for r in self.results:
            for run in runs:
                if run in r.sched:
                    cpu, wait = r.sched[run]
                    parts.append(f"{r.label} {run}: {cpu:.2f} s on a CPU, {wait:.2f} s waiting for one")
        if parts:
            self.w("Server threads during the bench (`/proc/<pid>/task/*/schedstat`; the wait is time the server "
                   "was ready to run while other processes had the cores): " + "; ".join(parts) + ".")
            self.w()

    def plots(self, runs):
        links = []
        for r in self.results:
            for run in runs:
                src = r.folder / f"{run}.svg"
                if src.exists():
                    self.svg_dir.mkdir(parents=True, exist_ok=True)
                    dst = self.svg_dir / f"{r.label}-{run}.svg"
                    shutil.copyfile(src, dst)
                    rel = os.path.relpath(dst, self.doc_path.parent)
                    links.append(f"[{r.label} {run}]({rel})")
        if links:
            self.w("Latency per second (p50/p99): " + ", ".join(links) + ".")
            self.w()

    # -- sections --

    def header(self):
        self.w(BEGIN)
        self.w("<!-- generated by tools/bench/report.py from build/bench-results/*; edit the script, not this part -->")
        self.w()
        self.w("## Standard scenarios S1–S8 (`make bench`)")
        self.w()
        m = next((r.machine for r in self.results if r.machine), {})
        if m:
            mem = int(m.get("mem_total_kib", "0") or 0)
            self.w(f"**Machine:** {m.get('nproc', '?')} cores ({m.get('cpu', '?')}), "
                   f"{mem / 1048576:.1f} GiB RAM, kernel {m.get('kernel', '?')}, "
                   f"Debian {m.get('debian', '?')} ({m.get('os', '?')}), `ulimit -n` {m.get('ulimit_n', '?')}; "
                   "loopback only; the load generator shares the cores with the server (server CPU and RSS "
                   "are read from the server's own `/proc/<pid>`).")
            self.w()
        self.w("| server | folder | runs started → finished (UTC) | git commit | command |")
        self.w("|---|---|---|---|---|")
        for r in self.results:
            commit = r.run.get("git_commit", "?")
            dirty = r.run.get("git_dirty", "")
            dirty_note = "" if dirty.startswith("0") or not dirty else f" (+{dirty} changed)"
            self.w(f"| {r.label} | `{r.folder}` | {r.run.get('started', '?')} → {r.run.get('finished', '?')} | "
                   f"`{commit[:12]}`{dirty_note} | `{r.run.get('server', '?')}` |")
        self.w()
        self.w("Each scenario starts a fresh server process and stops it afterwards; the servers are measured "
               "back to back in one sitting, so compare **ratios** rather than absolute numbers (the machine is "
               "shared, see the load averages per scenario). Verdicts are computed by `tools/bench/report.py` "
               "from the numbers below.")
        self.w()

    def commands(self):
        self.w("### Commands")
        self.w()
        self.w("```")
        self.w("make bench        # = build, then:")
        for r in self.results:
            self.w(f"# {r.label}")
            self.w(r.commands.rstrip())
        self.w("```")
        self.w()

    def s1(self):
        self.w("### S1 — surge: 15,000 joins through the seed URL into one node")
        self.w()
        self.load_line(["S1"])
        rows = [
            ("connections attempted", lambda r, _: r.get("S1", "connections_attempted"), 0),
            ("opened", lambda r, _: r.get("S1", "connections_opened"), 0),
            ("connect failures", lambda r, _: r.get("S1", "connect_failures_total"), 0),
            ("time to all open (s)", lambda r, _: r.get("S1", "time_to_all_open_s"), 3),
            ("join rate (opened / time to all open, /s)", lambda r, _: join_rate(r), 0),
            ("handshake p50 / p99 (µs, incl. queueing)",
             lambda r, _: f"{fmt(r.get('S1', 'handshake_p50_us'))} / {fmt(r.get('S1', 'handshake_p99_us'))}", 0),
            ("server CPU, connect phase (s)", lambda r, _: r.get("S1", "server_cpu_s_connect"), 2),
            ("server RSS start → all open (KiB)",
             lambda r, _: f"{fmt(r.get('S1', 'server_rss_start_kib'))} → {fmt(r.get('S1', 'server_rss_open_kib'))}", 0),
        ]
        self.table(rows, ratio_rows={"join rate (opened / time to all open, /s)", "server CPU, connect phase (s)"})
        s, b = self.subj(), self.base()
        if not s:
            return
        f = failures(s, "S1")
        jr, jb = join_rate(s), join_rate(b) if b else None
        rt = ratio(jr, jb)
        self.goals("S1", [
            ("0 failures", fmt(f), None if f is None else f == 0, fmt(f), fmt(failures(b, "S1")) if b else "–", ""),
            ("join rate ≥ 0.7× the limit baseline's", f"{fmt(jr)}/s vs {fmt(jb)}/s = {fmt_ratio(rt)}",
             None if rt is None else rt >= 0.7, fmt(jr) + "/s", fmt(jb) + "/s", fmt_ratio(rt)),
        ])

    def s2(self):
        self.w("### S2 — memory: RSS growth per idle joined connection at 15,000")
        self.w()
        self.load_line(["S2"])
        rows = [
            ("opened / failures", lambda r, _: f"{fmt(r.get('S2', 'connections_opened'))} / {fmt(r.get('S2', 'connect_failures_total'))}", 0),
            ("server RSS start (KiB)", lambda r, _: r.get("S2", "server_rss_start_kib"), 0),
            ("server RSS all open (KiB)", lambda r, _: r.get("S2", "server_rss_open_kib"), 0),
            ("server RSS peak (KiB)", lambda r, _: r.get("S2", "server_rss_peak_kib"), 0),
            ("RSS growth per connection (bytes)", lambda r, _: r.get("S2", "server_bytes_per_connection"), 0),
        ]
        self.table(rows, ratio_rows={"RSS growth per connection (bytes)"})
        s, b = self.subj(), self.base()
        if not s:
            return
        v = num(s.get("S2", "server_bytes_per_connection"))
        bv = num(b.get("S2", "server_bytes_per_connection")) if b else None
        ok = None if v is None or not num(s.get("S2", "connections_opened")) else v <= 3072
        self.goals("S2", [("≤ 3 KiB (3,072 B) RSS per connection", f"{fmt(v)} B", ok, f"{fmt(v)} B",
                           f"{fmt(bv)} B", fmt_ratio(ratio(v, bv)))])

    def fanout_rows(self):
        return [
            ("published OK / planned",
             lambda r, run: f"{fmt(r.get(run, 'messages_published_ok'))} / {fmt(planned(r, run))}", 0),
            ("deliveries expected / received",
             lambda r, run: f"{fmt(r.get(run, 'deliveries_expected'))} / {fmt(r.get(run, 'deliveries_received'))}", 0),
            ("loss / duplicates / reordered",
             lambda r, run: f"{fmt(r.get(run, 'loss'))} / {fmt(r.get(run, 'duplicates'))} / {fmt(r.get(run, 'reordered'))}", 0),
            ("deliveries/s peak", lambda r, run: r.get(run, "deliveries_per_s_peak"), 0),
            ("deliveries/s average", lambda r, run: r.get(run, "deliveries_per_s_avg"), 0),
            ("latency p50 (µs)", lambda r, run: r.get(run, "latency_p50_us"), 0),
            ("latency p99 (µs)", lambda r, run: r.get(run, "latency_p99_us"), 0),
            ("latency p99.9 / max (µs)",
             lambda r, run: f"{fmt(r.get(run, 'latency_p999_us'))} / {fmt(r.get(run, 'latency_max_us'))}", 0),
            ("server CPU while publishing (s)", lambda r, run: r.get(run, "server_cpu_s_publish"), 2),
            ("deliveries per server CPU-second", lambda r, run: r.get(run, "deliveries_per_server_cpu_s"), 0),
            ("server RSS peak (KiB)", lambda r, run: r.get(run, "server_rss_peak_kib"), 0),
        ]

    def loss_item(self, run, scenario):
        s, b = self.subj(), self.base()
        loss = num(s.get(run, "loss"))
        exp = num(s.get(run, "deliveries_expected"))
        ok = None if loss is None or not exp else loss == 0 and not s.get(run, "duplicates")
        return (f"{run}: 0 loss", f"{fmt(loss)} of {fmt(exp)}", ok, fmt(loss), fmt(b.get(run, "loss")) if b else "–", "")

    def ratio_item(self, run, key, goal, at_least, label):
        s, b = self.subj(), self.base()
        v, bv = num(s.get(run, key)), num(b.get(run, key)) if b else None
        rt = ratio(v, bv)
        ok = None if rt is None else (rt >= at_least if goal == "ge" else rt <= at_least)
        sign = "≥" if goal == "ge" else "≤"
        measured = f"{fmt(v)} vs {fmt(bv)} = {fmt_ratio(rt)}"
        if key.startswith("latency"):
            measured += self.saturation_note([run])
        return (f"{run}: {label} {sign} {at_least}× baseline", measured, ok, fmt(v), fmt(bv), fmt_ratio(rt))

    def saturation_note(self, runs):
        """Latency on a machine whose cores are taken: say how long the servers waited for a CPU."""
        worst = []
        for r in (self.subj(), self.base()):
            if not r:
                continue
            for run in runs:
                if run in r.sched and r.sched[run][0] > 0:
                    cpu, wait = r.sched[run]
                    worst.append((wait / cpu, r.label, run))
        sat = [w for w in worst if w[0] > 1]
        if not sat:
            return ""
        return (" (⚠ machine saturated: the server threads waited for a CPU "
                + ", ".join(f"{x:.1f}× their CPU time ({lbl} {run})" for x, lbl, run in sat)
                + "; the latency is mostly queueing for the cores)")

    def s3(self):
        self.w("### S3 — fan-out: 10 rooms × 1,000 members, 20 and 5 msgs/s per room")
        self.w()
        self.load_line(["S3-20", "S3-5"])
        self.table(self.fanout_rows(), runs=["S3-20", "S3-5"],
                   ratio_rows={"deliveries/s peak", "deliveries/s average", "latency p50 (µs)", "latency p99 (µs)",
                               "deliveries per server CPU-second"})
        self.plots(["S3-20", "S3-5"])
        if not self.subj():
            return
        items = []
        for run in ("S3-20", "S3-5"):
            items.append(self.loss_item(run, "S3"))
            items.append(self.ratio_item(run, "deliveries_per_server_cpu_s", "ge", 0.85, "deliveries per server CPU-s"))
            items.append(self.ratio_item(run, "deliveries_per_s_peak", "ge", 0.85, "peak deliveries/s"))
        items.append(self.ratio_item("S3-5", "latency_p99_us", "le", 1.2, "p99 latency"))
        self.goals("S3", items)

    def s4(self):
        self.w("### S4 — big room: 10,000 subscribers in 1 room, 5 msgs/s")
        self.w()
        self.load_line(["S4"])
        self.table(self.fanout_rows(), runs=["S4"],
                   ratio_rows={"deliveries/s peak", "latency p50 (µs)", "latency p99 (µs)", "deliveries per server CPU-second"})
        self.plots(["S4"])
        if not self.subj():
            return
        self.goals("S4", [self.loss_item("S4", "S4"), self.ratio_item("S4", "latency_p99_us", "le", 1.2, "p99 latency")])

    def s5(self):
        self.w("### S5 — churn: 100,000 connect/close cycles")
        self.w()
        self.w("One server: a warm-up of 10,000 cycles (S5-warmup), then the 100,000 cycles (S5), 500 in flight, "
               "ended in turn by a close frame, a FIN and an RST. RSS \"start\" of S5 is after the warm-up; "
               "\"fresh\" is the process before any connection.")
        self.w()
        self.load_line(["S5-warmup", "S5"])
        rows = [
            ("cycles asked / opened", lambda r, _: f"{fmt(r.get('S5', 'churn_cycles'))} / {fmt(r.get('S5', 'connections_opened'))}", 0),
            ("connect failures", lambda r, _: r.get("S5", "connect_failures_total"), 0),
            ("ended by close frame (echoed / not) / FIN / RST",
             lambda r, _: f"{fmt(r.get('S5', 'churn_closeframe'))} / {fmt(r.get('S5', 'churn_closeframe_noecho'))} / "
                          f"{fmt(r.get('S5', 'churn_fin'))} / {fmt(r.get('S5', 'churn_rst'))}", 0),
            ("cycles/s", lambda r, _: r.get("S5", "churn_cycles_per_s"), 0),
            ("server CPU (s)", lambda r, _: r.get("S5", "server_cpu_s_total"), 2),
            ("server RSS fresh (KiB)", lambda r, _: r.get("S5-warmup", "server_rss_start_kib"), 0),
            ("server RSS start / peak / end (KiB)",
             lambda r, _: f"{fmt(r.get('S5', 'server_rss_start_kib'))} / {fmt(r.get('S5', 'server_rss_peak_kib'))} / "
                          f"{fmt(r.get('S5', 'server_rss_end_kib'))}", 0),
            ("RSS end vs start", lambda r, _: pct_txt(rss_change_pct(r, "S5")), 0),
            ("RSS end vs fresh", lambda r, _: pct_txt(rss_fresh_pct(r)), 0),
        ]
        self.table(rows, ratio_rows={"cycles/s", "server CPU (s)"})
        s, b = self.subj(), self.base()
        if not s:
            return
        if s.stats:
            self.w(f"roomcast `/api/stats` after the churn: connections {s.stats.get('connections')}, "
                   f"index {json.dumps(s.stats.get('index'))}, closes {json.dumps(s.stats.get('closes'))}.")
            self.w()
        pct, fresh = rss_change_pct(s, "S5"), rss_fresh_pct(s)
        opened = num(s.get("S5", "connections_opened"))
        cycles = num(s.get("S5", "churn_cycles"))
        empty = index_empty(s.stats)
        self.goals("S5", [
            ("all cycles completed", f"{fmt(opened)} of {fmt(cycles)} opened, {fmt(failures(s, 'S5'))} failures",
             None if opened is None else opened == cycles and failures(s, "S5") == 0, fmt(opened),
             fmt(b.get("S5", "connections_opened")) if b else "–", ""),
            ("RSS back within 5 % of where it started (after the warm-up)", pct_txt(pct),
             None if pct is None else abs(pct) <= 5, pct_txt(pct), pct_txt(rss_change_pct(b, "S5")) if b else "–", ""),
            ("… and of the fresh process (stricter: includes the allocator's working set)", pct_txt(fresh),
             None if fresh is None else abs(fresh) <= 5, pct_txt(fresh), pct_txt(rss_fresh_pct(b)) if b else "–", ""),
            ("indexes empty (`/api/stats`)", "–" if not s.stats else
             f"connections {s.stats.get('connections')}, index {json.dumps(s.stats.get('index'))}", empty,
             "empty" if empty else ("not empty" if empty is False else "–"), "n/a", ""),
        ])

    def s6(self):
        self.w("### S6 — 10 % slow consumers that never read (10 rooms × 500, 10 msgs/s per room, ~8 KiB messages)")
        self.w()
        self.w("S6-base is the same run with `--slow-share 0` (no slow consumers): the reference for the others' p99. "
               "Latency, loss and deliveries count only the clients that read.")
        self.w()
        self.load_line(["S6", "S6-base"])
        rows = self.fanout_rows() + [
            ("slow clients", lambda r, run: r.get(run, "slow_clients"), 0),
            ("how slow clients ended", lambda r, run: ", ".join(f"{k}={v}" for k, v in (r.get(run, "slow_end_state") or {}).items()) or "–", 0),
            ("slow end first / median / last (s after publish start)",
             lambda r, run: None if r.get(run, "slow_end_first_s_after_publish_start") is None else
             f"{fmt(r.get(run, 'slow_end_first_s_after_publish_start'), 2)} / {fmt(r.get(run, 'slow_end_median_s_after_publish_start'), 2)} / "
             f"{fmt(r.get(run, 'slow_end_last_s_after_publish_start'), 2)}", 0),
            ("server closes of reading clients",
             lambda r, run: ", ".join(f"{k}={v}" for k, v in (r.get(run, "server_closes_during_run") or {}).items()) or "0", 0),
            ("server RSS start / all open / end (KiB)",
             lambda r, run: f"{fmt(r.get(run, 'server_rss_start_kib'))} / {fmt(r.get(run, 'server_rss_open_kib'))} / {fmt(r.get(run, 'server_rss_end_kib'))}", 0),
        ]
        self.table(rows, runs=["S6", "S6-base"], ratio_rows={"latency p99 (µs)", "deliveries per server CPU-second"})
        self.plots(["S6", "S6-base"])
        s = self.subj()
        if not s:
            return
        p, pb = num(s.get("S6", "latency_p99_us")), num(s.get("S6-base", "latency_p99_us"))
        rt = ratio(p, pb)
        slow = num(s.get("S6", "slow_clients"))
        peak, peak_b = num(s.get("S6", "server_rss_peak_kib")), num(s.get("S6-base", "server_rss_peak_kib"))
        bound = None if peak_b is None or slow is None else peak_b + slow * ROOMCAST_MAX_QUEUE_BYTES / 1024
        ends = s.get("S6", "slow_end_state") or {}
        closed = ends.get("4008")
        items = [
            self.loss_item("S6", "S6"),
            ("others' p99 ≤ 1.2× the run without slow consumers", f"{fmt(p)} µs vs {fmt(pb)} µs = {fmt_ratio(rt)}"
             + self.saturation_note(["S6", "S6-base"]),
             None if rt is None else rt <= 1.2, f"{fmt(p)} µs", f"{fmt(pb)} µs (S6-base)", fmt_ratio(rt)),
            ("RSS bounded: peak ≤ S6-base peak + slow clients × max_queue_bytes (1 MiB)",
             f"{fmt(peak)} KiB vs bound {fmt(bound)} KiB", None if bound is None or peak is None else peak <= bound,
             f"{fmt(peak)} KiB", f"{fmt(bound)} KiB (bound)", ""),
            ("slow ones closed with 4008", f"{fmt(closed or 0)} of {fmt(slow)} saw 4008 (ends: "
             + (", ".join(f"{k}={v}" for k, v in ends.items()) or "–") + ")",
             None if not slow else (closed or 0) == slow, f"{fmt(closed or 0)} / {fmt(slow)}",
             "–", ""),
        ]
        b = self.base()
        if b:
            bends = b.get("S6", "slow_end_state") or {}
            items[-1] = items[-1][:4] + (", ".join(f"{k}={v}" for k, v in bends.items()) or "–", "")
        self.goals("S6", items)

    def s7(self):
        self.w("### S7 — overload: more joins than the node admits")
        self.w()
        s = self.subj()
        self.load_line(["S7"])
        rows = [
            ("admission limit (`--max-connections`)", lambda r, _: server_flag(r, "S7", "--max-connections") or "–", 0),
            ("joins attempted / opened", lambda r, _: f"{fmt(r.get('S7', 'connections_attempted'))} / {fmt(r.get('S7', 'connections_opened'))}", 0),
            ("refused, by kind", lambda r, _: ", ".join(f"{k}={v}" for k, v in (r.get("S7", "connect_failures") or {}).items()) or ("0" if r.get("S7", "connect_failures") is not None else "–"), 0),
            ("503s with Retry-After / mean Retry-After (s)",
             lambda r, _: None if r.get("S7", "connections_attempted") is None else
             f"{fmt(r.get('S7', 'retry_after_seen') or 0)} / {fmt(r.get('S7', 'retry_after_mean_s'), 2)}", 0),
            ("time to all open (s)", lambda r, _: r.get("S7", "time_to_all_open_s"), 3),
            ("server closes of admitted clients", lambda r, _: None if r.get("S7", "connections_attempted") is None else
             (", ".join(f"{k}={v}" for k, v in (r.get("S7", "server_closes_during_run") or {}).items()) or "0"), 0),
            ("admitted and still open at the end", lambda r, _: r.get("S7", "open_at_end"), 0),
        ]
        self.table(rows)
        self.w("The limit baseline has no admission limit, so S7 runs against roomcast only.")
        self.w()
        if not s or "S7" not in s.runs:
            self.goals("S7", [("excess gets 503 + Retry-After; admitted unaffected", "S7 not run", None, "–", "–", "")])
            return
        lim = server_flag(s, "S7", "--max-connections")
        lim = int(lim) if lim and lim.isdigit() else None
        att, opened = num(s.get("S7", "connections_attempted")), num(s.get("S7", "connections_opened"))
        fails = s.get("S7", "connect_failures") or {}
        n503 = fails.get("http_503", 0)
        other = sum(v for k, v in fails.items() if k != "http_503")
        ra = num(s.get("S7", "retry_after_seen")) or 0
        mean = num(s.get("S7", "retry_after_mean_s"))
        closes = s.get("S7", "server_closes_during_run") or {}
        open_end = num(s.get("S7", "open_at_end"))
        items = [
            ("the excess gets 503", f"{fmt(n503)} × 503 for {fmt(att)} − {fmt(lim)} = {fmt(None if lim is None or att is None else att - lim)} excess; other failures {other}",
             None if lim is None or att is None else (opened == lim and n503 == att - lim and other == 0), fmt(n503), "n/a", ""),
            ("… each with Retry-After, jittered (base 5 s + up to 100 %)",
             f"{fmt(ra)} of {fmt(n503)} had it; mean {fmt(mean, 2)} s (no jitter would give exactly {ROOMCAST_RETRY_AFTER_S:.2f})",
             None if not n503 else (ra == n503 and mean is not None and ROOMCAST_RETRY_AFTER_S < mean < 2 * ROOMCAST_RETRY_AFTER_S),
             f"{fmt(mean, 2)} s", "n/a", ""),
            ("admitted clients unaffected", f"server closes {sum(closes.values())}, open at the end {fmt(open_end)} of {fmt(opened)}",
             None if opened is None else (sum(closes.values()) == 0 and open_end == opened), fmt(open_end), "n/a", ""),
        ]
        self.goals("S7", items)

    def s8(self):
        self.w("### S8 — user push: 15,000 users online, messages to random single users")
        self.w()
        self.w("S8: 1,000 msgs/s for the latency; S8-max: 50,000 msgs/s asked over 64 API connections (one request "
               "in flight each), i.e. as fast as each server answers — its messages/s is the throughput compared.")
        self.w()
        self.load_line(["S8", "S8-max"])
        self.table(self.fanout_rows(), runs=["S8", "S8-max"],
                   ratio_rows={"deliveries/s average", "latency p50 (µs)", "latency p99 (µs)", "deliveries per server CPU-second"})
        self.plots(["S8", "S8-max"])
        if not self.subj():
            return
        s = self.subj()
        p99 = num(s.get("S8", "latency_p99_us"))
        items = [
            self.loss_item("S8", "S8"),
            self.loss_item("S8-max", "S8"),
            self.ratio_item("S8-max", "deliveries_per_s_avg", "ge", 0.7, "messages/s delivered"),
            ("S8: p99 ≤ 5 ms", f"{fmt(p99)} µs" + self.saturation_note(["S8"]), None if p99 is None else p99 <= 5000, f"{fmt(p99)} µs",
             f"{fmt(self.base().get('S8', 'latency_p99_us')) if self.base() else '–'} µs", ""),
        ]
        self.goals("S8", items)

    def summary_table(self):
        out = ["### Summary: roomcast against the goals", "",
               f"| scenario | goal | {SUBJECT} | {BASE} | ratio | verdict |", "|---|---|---|---|---|---|"]
        for sc, goal, sv, bv, rt, v in self.summary:
            out.append(f"| {sc} | {goal} | {sv} | {bv} | {rt} | {v} |")
        met = sum(1 for x in self.summary if x[5].startswith(MET))
        sat = sum(1 for x in self.summary if "⚠" in x[5])
        out += ["", f"{met} of {len(self.summary)} goals met "
                f"({sum(1 for x in self.summary if x[5].startswith(NOT_MET))} not met, "
                f"{sum(1 for x in self.summary if x[5].startswith(NA))} not measured)"
                + (f"; {sat} latency verdicts were measured while the servers waited longer for a CPU than they "
                   "ran (⚠): re-measure those on a quiet machine." if sat else "."), ""]
        return out

    def render(self) -> str:
        self.header()
        head_len = len(self.lines)
        for sec in (self.s1, self.s2, self.s3, self.s4, self.s5, self.s6, self.s7, self.s8):
            sec()
        self.commands()
        self.w(END)
        self.lines[head_len:head_len] = self.summary_table()
        return "\n".join(self.lines) + "\n"


def splice(doc: str, generated: str) -> str:
    if BEGIN in doc and END in doc:
        a = doc.index(BEGIN)
        b = doc.index(END) + len(END)
        rest = doc[b:]
        if rest.startswith("\n"):
            rest = rest[1:]
        return doc[:a] + generated + rest
    # no markers yet: after the intro (before the first "## " heading)
    m = re.search(r"^## ", doc, re.M)
    pos = m.start() if m else len(doc)
    return doc[:pos] + generated + "\n" + doc[pos:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc", default="docs/benchmarks.md")
    ap.add_argument("--svg-dir", default="docs/bench")
    ap.add_argument("--results", default="build/bench-results", help="folder of the default limit/ and roomcast/")
    ap.add_argument("--stdout", action="store_true", help="print the generated part instead of rewriting --doc")
    ap.add_argument("folders", nargs="*", metavar="LABEL=DIR")
    a = ap.parse_args()
    pairs = []
    for f in a.folders:
        if "=" not in f:
            ap.error(f"expected LABEL=DIR, got {f!r}")
        pairs.append(tuple(f.split("=", 1)))
    labels = [p[0] for p in pairs]
    for d in (SUBJECT, BASE):
        if d not in labels:
            pairs.insert(0, (d, os.path.join(a.results, d)))
    results = []
    for label, folder in pairs:
        p = Path(folder)
        if not p.is_dir():
            print(f"report.py: {p} missing; {label} left out", file=sys.stderr)
            continue
        results.append(Result(label, p))
    if not results:
        print("report.py: no result folders", file=sys.stderr)
        return 2
    doc_path = Path(a.doc)
    d = Doc(results, Path(a.svg_dir), doc_path)
    generated = d.render()
    if a.stdout:
        sys.stdout.write(generated)
        return 0
    old = doc_path.read_text() if doc_path.exists() else "# roomcast benchmarks\n\n"
    doc_path.write_text(splice(old, generated))
    print(f"report.py: rewrote the generated part of {doc_path} ({len(results)} servers); plots in {a.svg_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
