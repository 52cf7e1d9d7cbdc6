# SPDX-License-Identifier: GPL-2.0-or-later
"""Turns the measured rows into results.csv (every repeat plus the
medians), results.md and results.rst (the same tables, with berth's ratios
to its peers) and plot.png (gnuplot). Nothing here decides pass/fail."""

import csv
import json
import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from measure import WORKLOADS
from servers import LABELS, SERVERS

# Repeats further apart than this (max / min) mark their median as noisy.
NOISY = 1.5
NOISE_MARK = " (±)"
NOISE_TEXT = (f"(±): the repeats of that cell differ by more than {NOISY}× "
              "(see results.csv); its median is noise more than measure.")
COLORS = {"berthd": "#d62728", "nbdkit": "#1f77b4", "qsd": "#2ca02c",
          "qemu-nbd": "#9467bd"}


@dataclass
class Row:
    section: str    # fio, scaling, nbdcopy, qmp
    backend: str
    server: str
    workload: str
    config: str     # what varies inside a section ("" for fio)
    rep: int
    value: float
    unit: str
    load: float     # the 1-minute load average when the row was recorded


class Results:
    def __init__(self):
        self.rows: List[Row] = []

    def add(self, section, backend, server, workload, config, rep, value, unit,
            load: Optional[float] = None) -> None:
        self.rows.append(Row(section, backend, server, workload, config, rep,
                             value, unit, os.getloadavg()[0] if load is None else load))

    @classmethod
    def from_csv(cls, path: str) -> "Results":
        res = cls()
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if r["rep"] != "median":
                    res.add(r["section"], r["backend"], r["server"], r["workload"],
                            r["config"], int(r["rep"]), float(r["value"]), r["unit"],
                            float(r.get("load") or 0))
        return res

    def median(self, section, backend, server, workload, config="") -> Optional[float]:
        vals = [r.value for r in self.rows if (r.section, r.backend, r.server,
                r.workload, r.config) == (section, backend, server, workload, config)]
        return statistics.median(vals) if vals else None

    def noisy(self, section, backend, server, workload, config="") -> bool:
        """Whether the repeats of one measurement differ by more than
        NOISY times: then its median says little."""
        vals = [r.value for r in self.rows if (r.section, r.backend, r.server,
                r.workload, r.config) == (section, backend, server, workload, config)]
        return len(vals) > 1 and (min(vals) <= 0 or max(vals) / min(vals) > NOISY)

    def cell(self, section, backend, server, workload, config="", unit="") -> str:
        """The median, formatted, with NOISE_MARK if the repeats are noisy."""
        m = fmt(self.median(section, backend, server, workload, config), unit)
        return m + NOISE_MARK if self.noisy(section, backend, server, workload, config) else m

    def keys(self, section: str) -> List[Tuple[str, str, str, str, str]]:
        """Distinct (backend, server, workload, config, unit), first-seen order."""
        seen = {}
        for r in self.rows:
            if r.section == section:
                seen.setdefault((r.backend, r.server, r.workload, r.config, r.unit), None)
        return list(seen)


def fmt(v: Optional[float], unit: str = "") -> str:
    if v is None:
        return "–"
    if unit == "IOPS":
        return f"{v / 1000:.1f}k"
    if unit == "ms":
        return f"{v:.2f}"
    return f"{v:.0f}"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}" if a is not None and b else "–"


def write_csv(res: Results, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "backend", "server", "workload", "config", "rep",
                    "value", "unit", "load"])
        for r in res.rows:
            w.writerow([r.section, r.backend, r.server, r.workload, r.config,
                        r.rep, f"{r.value:.3f}", r.unit, f"{r.load:.2f}"])
        for section in ("fio", "scaling", "nbdcopy", "qmp"):
            for backend, server, workload, config, unit in res.keys(section):
                m = res.median(section, backend, server, workload, config)
                w.writerow([section, backend, server, workload, config, "median",
                            f"{m:.3f}", unit, ""])


# A table is (title, text above it, header cells, rows of cells).
Table = Tuple[str, str, List[str], List[List[str]]]


def fio_tables(res: Results, backends: Dict[str, str]) -> List[Table]:
    tables = []
    for backend, label in backends.items():
        servers = [s for s in SERVERS
                   if any(k[0] == backend and k[1] == s for k in res.keys("fio"))]
        if not servers:
            continue
        peers = [s for s in servers if s != "berthd"]
        head = ["workload"] + [LABELS[s] for s in servers]
        head += [f"berth / {LABELS[p]}" for p in ("nbdkit", "qsd") if p in peers]
        head += ["berth / best peer"] if peers else []
        rows = []
        for w in WORKLOADS:
            med = {s: res.median("fio", backend, s, w.key) for s in servers}
            row = [f"{w.label} ({w.unit})"] + [res.cell("fio", backend, s, w.key, "", w.unit)
                                              for s in servers]
            b = med.get("berthd")
            row += [ratio(b, med[p]) for p in ("nbdkit", "qsd") if p in peers]
            if peers:
                known = [med[p] for p in peers if med[p] is not None]
                row.append(ratio(b, max(known)) if known else "–")
            rows.append(row)
        tables.append((f"fio: {label}", "", head, rows))
    return tables


def scaling_tables(res: Results, backends: Dict[str, str], workload: str) -> List[Table]:
    rows = []
    for backend, server, wl, config, unit in res.keys("scaling"):
        if config != "1 export":
            continue
        one = res.median("scaling", backend, server, wl, "1 export")
        two = res.median("scaling", backend, server, wl, "2 exports")
        rows.append([LABELS[server], backends[backend],
                     res.cell("scaling", backend, server, wl, "1 export", unit),
                     res.cell("scaling", backend, server, wl, "2 exports", unit),
                     ratio(two, one)])
    if not rows:
        return []
    text = (f"Two exports, each on its own ``--object iothread``, driven at the "
            f"same time by two fio processes ({workload}), against one of them "
            f"alone; IOPS summed.")
    return [("I/O-thread scaling", text,
             ["server", "backend", "1 export", "2 exports at once", "2 / 1"], rows)]


def nbdcopy_tables(res: Results, mc: Dict[str, bool]) -> List[Table]:
    rows = []
    for backend, server, wl, config, unit in res.keys("nbdcopy"):
        if config != "connections=1":
            continue
        one = res.median("nbdcopy", backend, server, wl, "connections=1")
        four = res.median("nbdcopy", backend, server, wl, "connections=4")
        rows.append([LABELS[server], "yes" if mc.get(server) else "no",
                     res.cell("nbdcopy", backend, server, wl, "connections=1"),
                     res.cell("nbdcopy", backend, server, wl, "connections=4"),
                     ratio(four, one)])
    if not rows:
        return []
    text = ("``nbdcopy --threads=N --connections=N URI null:`` from a read-only "
            "export of the file on tmpfs, MiB/s. Without multi-conn nbdcopy "
            "opens one connection whatever N is.")
    return [("nbdcopy multi-conn", text,
             ["server", "multi-conn", "N=1", "N=4", "4 / 1"], rows)]


def qmp_tables(res: Results, workload: str) -> List[Table]:
    rows = []
    for backend, server, wl, config, unit in res.keys("qmp"):
        if wl != "idle p50":
            continue
        def m(name):
            return res.median("qmp", backend, server, name, config)
        rows.append([LABELS[server], config, fmt(m("idle p50"), "ms"),
                     fmt(m("idle p99"), "ms"), fmt(m("load p50"), "ms"),
                     fmt(m("load p99"), "ms"), fmt(m("load max"), "ms"),
                     fmt(m("load IOPS"), "IOPS")])
    if not rows:
        return []
    text = (f"``query-block-exports`` round trips on the QMP socket, one every "
            f"5 ms, idle and while fio runs {workload} on the export (file on "
            f"tmpfs); milliseconds.")
    return [("QMP latency under load", text,
             ["server", "export runs in", "idle p50", "idle p99", "load p50",
              "load p99", "load max", "fio IOPS"], rows)]


def markdown(tables: List[Table], header: List[str], notes: List[str]) -> str:
    out = ["# berth benchmark", ""] + header + [""]
    for title, text, head, rows in tables:
        out += [f"## {title}", ""]
        out += [text.replace("``", "`"), ""] if text else []
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def rst(tables: List[Table], notes: List[str]) -> str:
    out = []
    for title, text, head, rows in tables:
        out += [title, "~" * len(title), ""]
        out += [text, ""] if text else []
        out += [".. list-table::", "   :header-rows: 1", ""]
        for r in [head] + rows:
            out.append("   * - " + r[0])
            out += [f"     - {c}" for c in r[1:]]
        out.append("")
    if notes:
        out += ["Notes", "~~~~~", ""] + [f"* {n}" for n in notes] + [""]
    return "\n".join(out)


def _dat(path: str, rows: List[Tuple[str, Dict[str, Optional[float]]]]) -> float:
    """Writes a gnuplot data file; returns its largest value."""
    with open(path, "w") as f:
        f.write("# label " + " ".join(SERVERS) + "\n")
        for label, vals in rows:
            cells = [f"{vals[s]:.4f}" if vals.get(s) is not None else "?"
                     for s in SERVERS]
            f.write(f'"{label}" ' + " ".join(cells) + "\n")
    return max((v for _, vals in rows for v in vals.values() if v is not None),
               default=1.0)


def plot(res: Results, backends: Dict[str, str], out: str, title: str) -> Optional[str]:
    """plot.png in OUT: one panel per backend, every server's median relative
    to the fastest peer, and a panel of the scaling ratios. Returns why no
    plot was made, or None."""
    if not shutil.which("gnuplot"):
        return "gnuplot not found: no plot (scripts/install-deps.sh bench)"
    panels = []
    for backend, label in backends.items():
        rows = []
        for w in WORKLOADS:
            med = {s: res.median("fio", backend, s, w.key) for s in SERVERS}
            peers = [v for s, v in med.items() if s != "berthd" and v is not None]
            if med["berthd"] is None and not peers:
                continue
            best = max(peers) if peers else med["berthd"]
            rows.append((w.label, {s: (v / best if v is not None else None)
                                   for s, v in med.items()}))
        if rows:
            top = _dat(os.path.join(out, f"plot-{backend}.dat"), rows)
            panels.append((f"plot-{backend}.dat", f"{label}: relative to the fastest peer",
                           top, len(rows)))
    rows = []
    for section, one, two, name in (("scaling", "1 export", "2 exports", "I/O threads 2/1"),
                                    ("nbdcopy", "connections=1", "connections=4",
                                     "nbdcopy 4/1")):
        for backend in dict.fromkeys(k[0] for k in res.keys(section)):
            vals = {}
            for s in SERVERS:
                wl = next((k[2] for k in res.keys(section) if k[0] == backend
                           and k[1] == s), None)
                a = res.median(section, backend, s, wl, one) if wl else None
                b = res.median(section, backend, s, wl, two) if wl else None
                vals[s] = b / a if a and b is not None else None
            rows.append((f"{name} ({backend})", vals))
    if rows:
        top = _dat(os.path.join(out, "plot-scaling.dat"), rows)
        panels.append(("plot-scaling.dat", "2 I/O threads / 1, nbdcopy 4 connections / 1",
                       top, len(rows)))
    if not panels:
        return "nothing to plot"
    cols = 2 if len(panels) > 1 else 1
    lines_ = (len(panels) + cols - 1) // cols
    gp = [f"set terminal pngcairo size {700 * cols},{380 * lines_} font 'sans,9'",
          "set output 'plot.png'",
          f"set multiplot layout {lines_},{cols} title '{title}' font ',11'",
          "set style data histograms", "set style histogram clustered gap 1",
          "set style fill solid 0.85 border -1", "set datafile missing '?'",
          "set grid ytics", "set key outside top center horizontal",
          "set xtics noenhanced font ',8'", "set title noenhanced"]
    for i, (dat, ptitle, top, n) in enumerate(panels):
        series = ", ".join(
            f"'{dat}' using {j + 2}:xtic(1) title '{LABELS[s]}' lc rgb '{COLORS[s]}'"
            for j, s in enumerate(SERVERS))
        gp += ["unset key"] if i == 1 else []
        gp += [f"set title '{ptitle}'", f"set yrange [0:{max(top, 1.0) * 1.1:.2f}]",
               f"set xrange [-0.6:{n - 0.4}]",
               f"plot {series}, 1 with lines dt 2 lc 'black' notitle"]
    gp.append("unset multiplot")
    with open(os.path.join(out, "plot.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", "plot.gp"], cwd=out, capture_output=True, text=True)
    if r.returncode != 0:
        return "gnuplot failed: " + r.stderr.strip().splitlines()[-1]
    return None


def render(res: Results, out: str, meta: dict) -> str:
    """results.md, results.rst and plot.png in OUT; returns the markdown."""
    tables = (fio_tables(res, meta["backends"])
              + scaling_tables(res, meta["all_backends"], meta["load"])
              + nbdcopy_tables(res, meta["multi_conn"])
              + qmp_tables(res, meta["load"]))
    # Notes quote servers' messages: no markup characters in them.
    notes = [n.replace("`", "'").replace("*", "") for n in meta["notes"]]
    if any(NOISE_MARK in c for t in tables for r in t[3] for c in r):
        notes.insert(0, NOISE_TEXT)
    why = plot(res, meta["backends"], out, "berth benchmark")
    if why:
        notes.append(why)
    md = markdown(tables, meta["header"], notes)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "results.rst"), "w") as f:
        f.write(rst(tables, notes))
    return md


def write_all(res: Results, out: str, meta: dict) -> str:
    """Everything in OUT: results.csv, meta.json (what render() needs besides
    the rows) and render()'s files. Returns the markdown."""
    write_csv(res, os.path.join(out, "results.csv"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return render(res, out, meta)


def rerender(out: str) -> str:
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    return render(Results.from_csv(os.path.join(out, "results.csv")), out, meta)
