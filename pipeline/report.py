"""``labelloop report``: one self-contained HTML page about the loop, plus its plots as PNGs.

Everything comes from what rounds recorded (``store.rounds()``: the monitor step's numbers, the
prediction files), and the registry's versions and promotion log; nothing is re-predicted, so a
report takes seconds whatever the model. The page embeds its plots as base64 PNG, so it can be
mailed or archived alone; ``<stem>_files/`` beside it holds the same PNGs, for slides.

Plots: learning curve, auto-label coverage and audited precision, pool confidence per round,
confusion matrix of the champion, correction rate per class, drift per round. A plot without
data says so in its place rather than disappearing.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.certify import describe, latest_annotator_quality, project_certificate
from pipeline.files import write_text_atomic
from pipeline.ingest import walked_by_ingest
from pipeline.project.project import Project
from pipeline.registry.registry import PromotionEvent, VersionInfo

# Rounds drawn in the confidence histogram at most (the newest), so it stays readable.
MAX_HISTOGRAM_ROUNDS = 8


class ReportError(RuntimeError):
    """The report cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class ReportData:
    """What the report shows, read once from the project."""

    project: str
    classes: tuple[str, ...]
    target_precision: float
    rounds: list[dict]
    versions: list[VersionInfo]
    history: list[PromotionEvent]
    certificate: dict | None = None
    annotators: tuple[dict, ...] = ()

    @property
    def monitored(self) -> list[tuple[int, dict]]:
        """(round id, monitor record) of the rounds whose monitor step ran, oldest first."""
        return [(r["id"], r["stats"]["monitor"]) for r in self.rounds
                if r["stats"].get("monitor")]


@dataclass(frozen=True)
class Plot:
    """One plot as PNG; ``note`` says why it holds no data (the PNG then says it too)."""

    name: str
    title: str
    png: bytes
    note: str | None = None


def collect(project: Project) -> ReportData:
    """Read rounds, versions and promotions; ``ReportError`` if no round has run yet."""
    rounds = project.store.rounds()
    if not rounds:
        raise ReportError(f"project {project.config.project.name!r} has no rounds yet: nothing "
                          "to report. Run `labelloop round` first")
    return ReportData(project.config.project.name, tuple(project.classes),
                      project.config.loop.target_precision, rounds,
                      project.registry.versions(), project.registry.history(),
                      project_certificate(project),
                      tuple(latest_annotator_quality(rounds)))


def write_report(project: Project, out: str | Path) -> tuple[Path, list[Path]]:
    """Write the HTML page to ``out`` and the PNGs to ``<out stem>_files/``; returns both."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"--out {out}: the report is an HTML page; give a name ending .html")
    data = collect(project)
    plots = make_plots(data)
    files_dir = out.with_name(f"{out.stem}_files")
    if walked_by_ingest(files_dir, project.config.images_dir):
        # Its PNGs joined the pool at the next ingest (a review found six plots there); ingest
        # does not walk hidden folders.
        files_dir = out.with_name(f".{out.stem}_files")
    files_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in plots:
        path = files_dir / f"{plot.name}.png"
        path.write_bytes(plot.png)
        written.append(path)
    write_text_atomic(out, render_html(data, plots))  # never half a page over a good one
    return out, written


# ---- plots --------------------------------------------------------------------------------
def make_plots(data: ReportData) -> list[Plot]:
    """Every plot of the report, drawn with matplotlib's Agg canvas (no display needed)."""
    makers: list[tuple[str, str, Callable]] = [
        ("learning_curve", "Learning curve: evaluation accuracy against human labels used",
         _learning_curve),
        ("auto_label", "Auto-label coverage and audited precision per round", _auto_label),
        ("confidence", "Confidence of the champion on the pool, per round", _confidence),
        ("confusion", "Confusion matrix of the champion (evaluation set)", _confusion),
        ("correction", "How often people changed the pre-annotation, per class", _correction),
        ("drift", "Drift of new images per round", _drift),
    ]
    return [_render(name, title, draw, data) for name, title, draw in makers]


def _render(name: str, title: str, draw: Callable, data: ReportData) -> Plot:
    """Draw one plot; a draw function returns a note instead of drawing when it has no data."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    note = draw(fig, data)
    if note is not None:
        _empty(fig, note)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return Plot(name, title, buf.getvalue(), note)


def _empty(fig, message: str) -> None:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=12, color="0.35")


def _learning_curve(fig, data: ReportData) -> str | None:
    points = [(m["champion"]["n_train"], m["champion"]["eval"], rid) for rid, m in data.monitored
              if (m.get("champion") or {}).get("eval") and m["champion"].get("n_train")]
    if not points:
        return "no data yet: needs a champion and held-out human labels to evaluate it on"
    ax = fig.add_subplot()
    x = [p[0] for p in points]
    # Boxes: accuracy is the share of images whose kept boxes are right; mAP@0.5 beside it.
    second, name = ("macro_f1", "macro-F1") if "macro_f1" in points[-1][1] else \
        ("map_50", "mAP@0.5")
    ax.plot(x, [p[1]["accuracy"] for p in points], "o-", label="accuracy")
    ax.plot(x, [p[1].get(second) for p in points], "s--", label=name)
    for n, ev, rid in points:
        ax.annotate(f"r{rid}", (n, ev["accuracy"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel("human labels the champion trained on")
    ax.set_ylabel("on held-out human labels")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def _auto_label(fig, data: ReportData) -> str | None:
    rows = [(rid, m["auto_label"]) for rid, m in data.monitored
            if m["auto_label"].get("coverage") is not None]
    if not rows:
        return "no data yet: no round has auto-accepted with a champion"
    ax = fig.add_subplot()
    ids = [rid for rid, _ in rows]
    ax.plot(ids, [a["coverage"] for _, a in rows], "o-", label="coverage of the pool")
    audited = [(rid, a["audit"]) for rid, a in rows if (a.get("audit") or {}).get("n")]
    if audited:
        prec = np.array([a["precision"] for _, a in audited])
        lo = np.array([a["interval"][0] for _, a in audited])
        hi = np.array([a["interval"][1] for _, a in audited])
        ax.errorbar([rid for rid, _ in audited], prec, yerr=[prec - lo, hi - prec], fmt="s",
                    capsize=4, label="audited precision (95% interval)")
    else:
        ax.text(0.02, 0.05, "no audited machine label answered yet", transform=ax.transAxes,
                color="0.35")
    ax.axhline(data.target_precision, color="C3", ls=":", label="target precision")
    ax.set_xlabel("round")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(ids)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def _confidences(path: Path) -> np.ndarray:
    """[N] the predicted items' confidence: the top class probability, or (a detection
    round's ``.boxes.json``) the image's confidence."""
    if path.name.endswith(".boxes.json"):
        items = json.loads(path.read_text(encoding="utf-8"))["items"]
        return np.array([v["confidence"] for v in items.values()], dtype=np.float64)
    with np.load(path) as npz:
        return npz["probs"].max(axis=1)


def _confidence(fig, data: ReportData) -> str | None:
    series = []
    for r in data.rounds:
        path = (r["stats"].get("predict") or {}).get("file")
        if path and Path(path).is_file():
            series.append((r["id"], _confidences(Path(path))))
    series = series[-MAX_HISTOGRAM_ROUNDS:]
    if not series:
        return ("no data yet: no round has predicted the pool (or its prediction files "
                    "were deleted)")
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 41)
    colors = _colors(len(series))
    for (rid, conf), color in zip(series, colors, strict=True):
        ax.hist(conf, bins=bins, histtype="step", lw=1.6, color=color,
                weights=np.full(len(conf), 1 / len(conf)), label=f"round {rid} ({len(conf)})")
    ax.set_xlabel("top probability (boxes: the image's confidence)")
    ax.set_ylabel("share of predicted items")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def _confusion(fig, data: ReportData) -> str | None:
    latest = [(rid, m["champion"]) for rid, m in data.monitored
              if (m.get("champion") or {}).get("eval")]
    if not latest:
        return "no data yet: needs a champion and held-out human labels"
    if "confusion" not in latest[-1][1]["eval"]:
        return "boxes have no confusion matrix: see mAP in the learning curve"
    rid, champion = latest[-1]
    matrix = np.array(champion["eval"]["confusion"])
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    k = len(data.classes)
    ax.set_xticks(range(k), data.classes, rotation=45 if k > 6 else 0, ha="right")
    ax.set_yticks(range(k), data.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("human label")
    ax.set_title(f"v{champion['version']} after round {rid}, {champion['eval']['n']} items",
                 fontsize=10)
    top = matrix.max() if matrix.size else 0
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > top / 2 else "black")


def _correction(fig, data: ReportData) -> str | None:
    latest = [m["annotators"]["correction_total"] for _, m in data.monitored]
    if not latest or not latest[-1]["n"]:
        return ("no data yet: no human label records whether the person changed the "
                    "pre-annotation (they come from Label Studio syncs)")
    corr = latest[-1]
    per_class = corr["per_class"] or {"every image": corr}  # boxes: no class per label
    names = list(per_class)
    rates = [per_class[c]["rate"] for c in names]
    ns = [per_class[c]["n"] for c in names]
    ax = fig.add_subplot()
    ax.bar(range(len(names)), [r if r is not None else 0 for r in rates], color="C1")
    for i, (rate, n) in enumerate(zip(rates, ns, strict=True)):
        ax.text(i, (rate or 0) + 0.01, f"n={n}" if rate is not None else "none", ha="center",
                fontsize=7)
    ax.axhline(corr["rate"], color="C0", ls="--",
               label=f"overall {corr['rate']:.3f} ({corr['changed']}/{corr['n']})")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, ha="right")
    ax.set_xlabel("class of the pre-annotation")
    ax.set_ylabel("correction rate")
    ax.set_ylim(0, max(0.1, max(r or 0 for r in rates) * 1.25))
    ax.legend(loc="upper right")


def _drift(fig, data: ReportData) -> str | None:
    rows = [(rid, m["drift"]) for rid, m in data.monitored if m["drift"].get("computed")]
    if not rows:
        reasons = [m["drift"].get("reason") for _, m in data.monitored]
        why = reasons[-1] if reasons and reasons[-1] else "no round has been monitored"
        return f"no drift test yet: {why}"
    names = list(rows[-1][1]["signals"])
    axes = fig.subplots(1, len(names), sharex=True)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        got = [(rid, d["signals"][name]) for rid, d in rows if name in d["signals"]]
        ids = [rid for rid, _ in got]
        ax.plot(ids, [s["effect"] for _, s in got], "o-")
        flagged = [(rid, s["effect"]) for rid, s in got if s["drift"]]
        if flagged:
            ax.plot(*zip(*flagged, strict=True), "o", color="C3", ms=10, mfc="none",
                    label="drift")
            ax.legend(loc="upper left", fontsize=8)
        ax.axhline(got[-1][1]["threshold"]["min_effect"], color="C3", ls=":")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{name}: {got[-1][1]['statistic']}", fontsize=10)
        ax.set_xlabel("round")
        ax.set_xticks(ids)
        ax.grid(alpha=0.3)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.1, 0.9, n)] if n > 1 else ["C0"]


# ---- the page -----------------------------------------------------------------------------
_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-style: italic; }
.warn { background: #fff3cd; border: 1px solid #e0c060; padding: 0.5em 1em; }
"""


def render_html(data: ReportData, plots: list[Plot]) -> str:
    """The page: warnings, the round table, the plots, the models and their promotions."""
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
             f"<title>labelloop report: {esc(data.project)}</title><style>{_STYLE}</style>"
             f"</head><body>\n<h1>labelloop report: {esc(data.project)}</h1>",
             f"<p>{len(data.rounds)} round(s), {len(data.versions)} model version(s); classes: "
             f"{esc(', '.join(data.classes))}.</p>"]
    warnings = (data.monitored[-1][1].get("warnings") or []) if data.monitored else []
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        parts.append(f"<div class='warn'><b>Warnings (latest monitored round)</b>"
                     f"<ul>{items}</ul></div>")
    if data.certificate is not None:
        parts.append(f"<h2>Certificate</h2><p id='certificate'>"
                     f"{esc(describe(data.certificate))}</p>")
    # Rates are measured on items two or more people answered: one person's answers alone
    # said "none yet" after hundreds of them (a review).
    parts.append("<h2>Annotators</h2>" + (_table(
        ["annotator", "shared items", "differs from the others", "error rate (Dawid-Skene)",
         "95% interval"],
        [[q["name"], q["items"], q["disagreements"], f"{q['rate']:.3f}",
          f"{q['interval'][0]:.3f}-{q['interval'][1]:.3f}"] for q in data.annotators])
        if data.annotators else "<p>none yet: each person's error rate is measured on items "
        "that two or more people answered</p>"))
    parts.append("<h2>Rounds</h2>" + _rounds_table(data))
    for plot in plots:
        encoded = base64.b64encode(plot.png).decode("ascii")
        note = f"<p class='note'>{esc(plot.note)}</p>" if plot.note else ""
        parts.append(f"<h2>{esc(plot.title)}</h2>{note}\n<img id='{plot.name}' "
                     f"alt='{esc(plot.title)}' src='data:image/png;base64,{encoded}'>")
    parts.append("<h2>Models</h2>" + _models_table(data))
    parts.append("<h2>Promotions and rollbacks</h2>" + _history_table(data))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _table(header: list[str], rows: list[list]) -> str:
    if not rows:
        return "<p>none yet</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _rounds_table(data: ReportData) -> str:
    rows = []
    for r in data.rounds:
        m = r["stats"].get("monitor") or {}
        ev = (m.get("champion") or {}).get("eval") or {}
        audit = (m.get("auto_label") or {}).get("audit") or {}
        people = m.get("annotators") or {}
        drift = m.get("drift") or {}
        rows.append([
            r["id"], r["status"], r["started_at"] and f"{r['started_at']:%Y-%m-%d %H:%M}",
            (m.get("champion") or {}).get("version"), ev.get("accuracy"), ev.get("ece"),
            (m.get("auto_label") or {}).get("coverage"), audit.get("precision"),
            people.get("tasks_done"), people.get("skipped"),
            people.get("median_lead_time_s"), (people.get("correction") or {}).get("rate"),
            ("yes" if drift.get("drift") else "no") if drift.get("computed") else "",
        ])
    return _table(["round", "status", "started (UTC)", "champion", "eval accuracy", "ECE",
                   "coverage", "audited precision", "new human labels", "skips",
                   "median lead time (s)", "correction rate", "drift"], rows)


def _models_table(data: ReportData) -> str:
    # A detector is scored by mAP@0.5 (the column was empty for one).
    boxes = any("map_50" in v.metrics and "eval_accuracy" not in v.metrics
                for v in data.versions)
    metric, name = ("map_50", "eval mAP@0.5") if boxes else ("eval_accuracy", "eval accuracy")
    rows = [[f"v{v.version}", "champion" if v.is_champion else "", f"{v.created:%Y-%m-%d %H:%M}",
             v.round_id, _int(v.metrics.get("n_train")), v.metrics.get(metric),
             v.snapshot] for v in data.versions]
    return _table(["version", "", "created (UTC)", "round", "trained on", f"{name} "
                   "(at training)", "label snapshot"], rows)


def _history_table(data: ReportData) -> str:
    rows = [[f"{e.time:%Y-%m-%d %H:%M:%S}", e.action,
             f"v{e.from_version}" if e.from_version else "", f"v{e.to_version}", e.reason]
            for e in data.history]
    return _table(["time (UTC)", "action", "from", "to", "reason"], rows)


def _int(value) -> int | None:
    return None if value is None else int(value)
