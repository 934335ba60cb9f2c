"""The printed report: medians, paired per-round ratios, loads, targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench_harness import DIRECT, FASTMCP, GATEWAY
from bench_phases import Metric, Phase, Plan, Results

# Targets from issue 15 (and the earlier overhead issue).
TARGET_P50_RATIO = 1.5
TARGET_HTTP_P50_RATIO = 1.3  # issue 15 item 4 (and issue 10): auth on
TARGET_BURST_DELTA_MS = 65.0
TARGET_LIST_RATIO = 1.2
TARGET_RSS_TWENTY_MB = 120.0
TARGET_GROWTH = 1.5  # CPU per MiB at the largest size over the smallest: ~1 is linear
TARGET_START_RATIO = 1.2  # 20 FastMCP upstreams through the gateway vs started directly
TARGET_INIT_RATIO = 1.2
TARGET_LIGHT_RATIO = 1.5


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def show(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def spread(values: Sequence[float | None]) -> str:
    """max/min of the known values: 1.00x is a quiet run, 1.3x a noisy one."""
    known = [v for v in values if v is not None and v > 0]
    return f"{max(known) / min(known):.2f}x" if len(known) > 1 else "-"


def loads_line(phase: Phase) -> str:
    return "load average (1 min) at the start of each round: " + ", ".join(
        f"r{i + 1} {one:.2f}" for i, (one, _, _) in enumerate(phase.loads))


def metric_tables(phase: Phase) -> list[str]:
    """Medians (rows: metrics, columns: targets), then the paired per-round ratios."""
    others = [t for t in phase.targets if t != phase.base]
    head = ["median over rounds", *phase.targets, *(f"{t}/{phase.base}" for t in others)]
    rows = []
    for metric in phase.metrics.values():
        row = [metric.title, *(show(metric.median(t), metric.fmt) for t in phase.targets)]
        for target in others:
            ratio = median(metric.ratios(target, phase.base)) if metric.paired else None
            row.append("-" if ratio is None else f"{ratio:.2f}x")
        rows.append(row)
    out = [phase.title, table(head, rows), ""]
    rounds = max((len(v) for m in phase.metrics.values() for v in m.values.values()),
                 default=0)
    ratio_rows = []
    for metric in phase.metrics.values():
        if not metric.paired:
            continue
        for target in others:
            ratios = metric.ratios(target, phase.base)
            if not any(r is not None for r in ratios):
                continue
            ratio_rows.append([
                metric.title if target == others[0] else "", target,
                *(show(r) for r in ratios), *[""] * (rounds - len(ratios)),
                show(median(ratios)), spread(ratios),
            ])
    if ratio_rows:
        out.append(table([f"paired: each round's value / that round's {phase.base}", "target",
                          *(f"r{i + 1}" for i in range(rounds)), "median", "max/min"],
                         ratio_rows))
    out.append(loads_line(phase))
    out += [f"note: {n}" for n in phase.notes]
    return out


def cold_table(phase: Phase) -> list[str]:
    """Rows: cases; ready and initialize with their paired ratio to the case's base."""
    m = phase.metrics
    rounds = max((len(v) for v in m["ready"].values.values()), default=0)
    rows = []
    for case in phase.targets:
        base = phase.base_of(case)
        ready = m["ready"].values.get(case, [])
        ratios = m["ready"].ratios(case, base) if base else []
        init_ratio = median(m["init"].ratios(case, base)) if base else None
        rows.append([
            case, show(m["init"].median(case), "{:.0f}"),
            "-" if init_ratio is None else f"{init_ratio:.2f}x",
            show(m["ready"].median(case), "{:.0f}"),
            " ".join(show(v, "{:.0f}") for v in ready) or "-",
            f"{base}" if base else "", " ".join(show(r) for r in ratios) or "-",
            "-" if median(ratios) is None else f"{median(ratios):.2f}x",
            show(m["cpu"].median(case), "{:.1f}"), show(m["close"].median(case), "{:.0f}"),
            show(max((v for v in m["orphans"].values.get(case, []) if v is not None),
                     default=None), "{:.0f}"),
            show(m["rss"].median(case), "{:.0f}"),
        ])
    head = ["case (medians over rounds)", "init (ms)", "init vs base", "ready (ms)",
            f"ready per round ({rounds})", "base", "ready / base per round", "median",
            "CPU (s)", "close (ms)", "orphans", "RSS (MB)"]
    return [phase.title, table(head, rows), loads_line(phase),
            *(f"note: {n}" for n in phase.notes)]


@dataclass
class Check:
    name: str
    measured: str
    target: str
    ok: bool | None  # None: not measured


def checks(res: Results, plan: Plan) -> list[Check]:
    """Every target of the issue that this run measured."""
    out: list[Check] = []
    ph = res.phases
    if "hot" in ph:
        p50 = median(ph["hot"].metrics["p50"].ratios(GATEWAY, DIRECT))
        out.append(Check("hot: gateway p50 / direct (paired)", show(p50) + "x",
                         f"<= {TARGET_P50_RATIO}x",
                         None if p50 is None else p50 <= TARGET_P50_RATIO))
        b = ph["hot"].metrics["burst"]
        gb, db = b.median(GATEWAY), b.median(DIRECT)
        diff = None if gb is None or db is None else gb - db
        out.append(Check("hot: 64 x sleep_ms, gateway - direct",
                         "-" if diff is None else f"{diff:+.1f} ms",
                         f"<= +{TARGET_BURST_DELTA_MS:g} ms",
                         None if diff is None else diff <= TARGET_BURST_DELTA_MS))
    for name in ("http", "http-legacy"):
        if name in ph:
            out += http_checks(name, ph[name])
    if "large" in ph:
        growth = ph["large"].metrics["growth"].median(GATEWAY)
        out.append(Check(f"large: gateway CPU per MiB, {plan.sizes_mib[-1]:g} vs "
                         f"{plan.sizes_mib[0]:g} MiB", show(growth) + "x",
                         f"<= {TARGET_GROWTH}x (linear)",
                         None if growth is None else growth <= TARGET_GROWTH))
    if "lists" in ph:
        lists = ph["lists"]
        ratio = median(lists.metrics["p50"].ratios(GATEWAY, DIRECT))
        out.append(Check("lists: gateway tools/list p50 / 1 upstream (paired)",
                         show(ratio) + "x" if ratio is not None else "not measured",
                         f"<= {TARGET_LIST_RATIO}x",
                         None if ratio is None else ratio <= TARGET_LIST_RATIO))
        rss = lists.metrics["rss"].median(GATEWAY)
        out.append(Check(f"lists: gateway RSS with {plan.list_upstreams} upstreams",
                         show(rss, "{:.0f} MB") if rss is not None else "not measured",
                         f"<= {TARGET_RSS_TWENTY_MB:g} MB",
                         None if rss is None else rss <= TARGET_RSS_TWENTY_MB))
    if "cold" in ph:
        cold, n = ph["cold"], plan.many_upstreams
        for case, base, target, name in (
            (f"gateway x{n}", phase_base(cold, f"gateway x{n}"), TARGET_START_RATIO,
             f"start-up: gateway x{n} (FastMCP upstreams) /"),
            (f"gateway x{n}, light upstream", "gateway x1, light upstream",
             TARGET_LIGHT_RATIO, f"start-up: gateway x{n}, light upstream /"),
        ):
            ratio = median(cold.metrics["ready"].ratios(case, base))
            stuck = any(note.startswith(case + ": not ready") for note in cold.notes)
            if stuck:
                out.append(Check(f"{name} {base}", f"not ready after {plan.ready_within:g} s",
                                 f"<= {target}x", False))
            elif base not in cold.targets or (target == TARGET_START_RATIO
                                              and base != f"direct x{n}"):
                out.append(Check(f"{name} direct x{n}", "floor not run (--quick)",
                                 f"<= {target}x", None))
            elif ratio is not None:
                out.append(Check(f"{name} {base}", show(ratio) + "x", f"<= {target}x",
                                 ratio <= target))
            else:
                out.append(Check(f"{name} {base}", "not measured", f"<= {target}x", None))
        init = median(cold.metrics["init"].ratios("gateway x1", "direct x1"))
        out.append(Check("start-up: gateway x1 initialize / bare FastMCP server's",
                         show(init) + "x", f"<= {TARGET_INIT_RATIO}x",
                         None if init is None else init <= TARGET_INIT_RATIO))
    return out


def http_checks(name: str, phase: Phase) -> list[Check]:
    """The HTTP front's targets in one era's phase (``http``, ``http-legacy``)."""
    out: list[Check] = []
    http = phase.metrics
    for who in ("gateway", "gateway+token", "gateway+jwt", "gateway/stdio"):
        p50 = median(http["p50"].ratios(who, DIRECT))
        out.append(Check(f"{name}: {who} p50 / direct (paired)", show(p50) + "x",
                         f"<= {TARGET_HTTP_P50_RATIO}x",
                         None if p50 is None else p50 <= TARGET_HTTP_P50_RATIO))
    floor = median(http["p50"].ratios("relay", DIRECT))
    if floor is not None:  # what any middle process costs here: bytes copied, no parse
        out.append(Check(f"{name}: relay p50 / direct (the floor of a middle process)",
                         show(floor) + "x", "(reported)", None))
        over = median(http["p50"].ratios("gateway", "relay"))
        out.append(Check(f"{name}: gateway p50 / relay (paired)", show(over) + "x",
                         "(reported)", None))
    for who, peer in (("gateway", "fastmcp"), ("gateway/stdio", "fastmcp/stdio")):
        p50 = median(http["p50"].ratios(who, peer))
        out.append(Check(f"{name}: {who} p50 / {peer} (paired)", show(p50) + "x", "< 1x",
                         None if p50 is None else p50 < 1))
    for who in ("gateway+token", "gateway+jwt"):
        mine, bare = http["cpu_mid"].median(who), http["cpu_mid"].median("gateway")
        out.append(Check(f"{name}: auth cost, {who} - gateway CPU per call",
                         "-" if mine is None or bare is None else f"{mine - bare:+.2f} ms",
                         "(reported)", None))
    return out


def phase_base(phase: Phase, case: str) -> str:
    return phase.base_of(case) or phase.base


def peer_table(res: Results) -> list[str]:
    """Gateway against FastMCP's proxy on every comparable row (paired per round)."""
    rows, behind = [], []
    for name in ("hot", "http", "http-legacy", "large", "lists", "cold"):
        phase = res.phases.get(name)
        if phase is None:
            continue
        pairs = ([(GATEWAY, FASTMCP)] if name != "cold" else [("gateway x1", "fastmcp x1")])
        for gw, peer in pairs:
            if gw not in phase.targets or peer not in phase.targets:
                continue
            for metric in phase.metrics.values():
                row = peer_row(name, metric, gw, peer)
                if row is not None:
                    rows.append(row)
                    if row[-1] == "no":
                        behind.append(f"{name}: {metric.title}")
    if not rows:
        return []
    out = [table(["gateway vs FastMCP's proxy", "gateway", "fastmcp", "gateway/fastmcp per round",
                  "median", "gateway leads"], rows)]
    out.append("gateway leads on every row" if not behind else
               "gateway does not lead on:\n" + "\n".join(f"  {row}" for row in behind))
    return out


def baseline_table(res: Results) -> list[str]:
    """This tree's gateway against another install's (``MCP_GATEWAY_BENCH_BASELINE``),
    paired per round on every row: a before/after in one interleaved run."""
    rows = []
    base = f"{GATEWAY}@base"
    for name, phase in res.phases.items():
        if GATEWAY not in phase.targets or base not in phase.targets:
            continue
        for metric in phase.metrics.values():
            row = peer_row(name, metric, GATEWAY, base)
            if row is not None:
                rows.append(row)
    if not rows:
        return []
    return [table(["gateway vs gateway@base (before/after)", "gateway", "@base",
                   "gateway/@base per round", "median", "gateway better"], rows)]


def peer_row(phase: str, metric: Metric, gw: str, peer: str) -> list[str] | None:
    mine, theirs = metric.median(gw), metric.median(peer)
    if not metric.better or mine is None or theirs is None:
        return None
    ratios = metric.ratios(gw, peer)
    if mine == theirs:
        leads = "tie"
    else:
        leads = "yes" if (mine < theirs) == (metric.better == "lower") else "no"
    return [f"{phase}: {metric.title}", show(mine, metric.fmt), show(theirs, metric.fmt),
            " ".join(show(r) for r in ratios) or "-",
            "-" if median(ratios) is None else show(median(ratios)) + "x", leads]


def report(res: Results, plan: Plan) -> tuple[str, bool]:
    """The printed report, and whether every measured target was met."""
    m = res.machine
    out = [
        "",
        f"Fast MCP Gateway benchmark ({plan.name} run, {res.seconds:.0f} s, "
        f"phases: {', '.join(res.phases)})",
        f"machine : {m['platform']}, {m['cpus']} CPUs ({m['usable_cpus']} usable), load avg "
        f"{' '.join(map(str, m['loadavg']))} at start, "
        f"{' '.join(map(str, m.get('loadavg_end', [])))} at end",
        f"software: Python {m['python']}, fastmcp {m['fastmcp']}, mcp {m['mcp']}, "
        f"fast-mcp-gateway {m['fast-mcp-gateway']}",
        f"protocol: client mode {m['protocol']!r} (gateway and proxy -> upstream the same); "
        "negotiated: " + (", ".join(f"{k} {v}" for k, v in res.negotiated.items()) or "-"),
        f"rounds  : {plan.rounds} (cold start {plan.cold_rounds}); every figure is the "
        "median over rounds, every ratio the median of per-round paired ratios",
        "targets : direct = the upstream itself; relay = a byte copier in between (the floor "
        "of any stdio gateway); gateway = mcp-gateway serve; fastmcp = FastMCP's proxy "
        "with a persistent session per upstream",
    ]
    for name in ("hot", "http", "http-legacy", "large", "lists"):
        if name in res.phases:
            out += ["", *metric_tables(res.phases[name])]
    if "cold" in res.phases:
        out += ["", *cold_table(res.phases["cold"])]
    peers = peer_table(res)
    if peers:
        out += ["", *peers]
    before = baseline_table(res)
    if before:
        out += ["", *before]
    found = checks(res, plan)
    verdict = {True: "PASS", False: "FAIL", None: "-"}
    out += ["", table(["target", "measured", "target", "result"],
                      [[c.name, c.measured, c.target, verdict[c.ok]] for c in found])]
    out.append("")
    out.append("leaked processes: " + (", ".join(map(str, res.leaked)) or "none"))
    ok = all(c.ok is not False for c in found)
    out.append(f"targets: {'all met' if ok else 'NOT all met'}")
    return "\n".join(out), ok
