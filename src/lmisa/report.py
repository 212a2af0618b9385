"""A visual report of predictions: per-case figures, the run's training curves, the evaluation table.

``make_report(run_dir, pred_dir, image_source, ref_dir=None)`` writes into ``out_dir`` (default
``<pred_dir>/report``)::

    index.html, index.md     everything put together (open index.html in a browser)
    progress.png             the run's training curves (copied from the run folder)
    cases/<case>.png         per case: 3 representative axial slices (rows), each as the image,
                             its MLNGM, and the image with the reference (solid) and predicted
                             (dashed) contours of every organ, one colour per organ

Representative slices: the foreground's axial extent (reference labels when given, else the
prediction) is cut into three equal parts and each part gives its slice with the most foreground;
with no foreground at all, the slices at 25, 50 and 75 % of the volume. Slices are displayed in
radiological convention when the volume is stored axially (anterior up, patient's right on the
left), with the right pixel aspect. The MLNGM column is :func:`lmisa.mlngm.mlngm` of the displayed
slice at its own resolution (training computes it after resampling to the run's spacing, so fine
details can differ slightly).

The evaluation table is ``summary.md`` (as written by ``lmisa evaluate``) from ``pred_dir`` or the
``summary`` argument. With references, each case's caption also gives its Dice per organ.
Figures are drawn with matplotlib's Agg canvas (no display needed, no global pyplot state).
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmisa.config import read_config_mapping
from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, read_label

__all__ = ["make_report", "representative_slices", "case_figure"]

DPI = 80
PANEL_INCHES = 2.6
INDEX_HTML = "index.html"
INDEX_MD = "index.md"
CASES_DIR = "cases"


# --------------------------------------------------------------------------------------------------
# slices and display


def representative_slices(labels: np.ndarray, n: int = 3) -> list[int]:
    """Up to ``n`` axial slice indices of a ``(Z, Y, X)`` label map that show its foreground well."""
    labels = np.asarray(labels)
    z = labels.shape[0]
    counts = (labels > 0).reshape(z, -1).sum(1)
    fg = np.flatnonzero(counts)
    if fg.size == 0:
        picks = [int(round(f * (z - 1))) for f in ((0.25, 0.5, 0.75) if n == 3 else np.linspace(0.25, 0.75, n))]
        return sorted(set(picks))
    parts = np.array_split(np.arange(fg.min(), fg.max() + 1), min(n, int(fg.max() - fg.min() + 1)))
    return sorted({int(p[np.argmax(counts[p])]) for p in parts if p.size})


def _display_flips(affine: np.ndarray) -> tuple[bool, bool]:
    """(flip rows, flip columns) that show an axially stored slice anterior-up, patient-right-left."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    col_i, col_j = a[:, 0], a[:, 1]  # world directions of the array's X (columns) and Y (rows) axes
    if int(np.argmax(np.abs(col_i))) != 0 or int(np.argmax(np.abs(col_j))) != 1:
        return False, False  # not stored axially: show as stored
    # RAS+: +x is the patient's right, +y anterior. Row 0 should be the most anterior; column 0 the
    # most right (radiological convention).
    return bool(col_j[1] > 0), bool(col_i[0] > 0)


def _orient(a: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    if flips[0]:
        a = a[::-1]
    if flips[1]:
        a = a[:, ::-1]
    return a


def _colour(value: int) -> tuple[float, float, float]:
    from matplotlib import colormaps

    return colormaps["tab10"]((value - 1) % 10)[:3]


def _dice(pred: np.ndarray, ref: np.ndarray, value: int) -> float | None:
    p, r = pred == value, ref == value
    denom = int(p.sum()) + int(r.sum())
    if denom == 0:
        return None
    return 200.0 * int((p & r).sum()) / denom


def case_figure(
    image: MedicalImage,
    pred: np.ndarray,
    ref: np.ndarray | None,
    labels: dict[str, int],
    out: Path,
    title: str = "",
    mlngm_levels: int = 4,
    n_slices: int = 3,
) -> list[int]:
    """Draw one case's figure into ``out`` (PNG); returns the slice indices shown."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from lmisa.mlngm import mlngm

    vol = np.asarray(image.array, dtype=np.float32)
    if vol.ndim == 2:
        vol, pred = vol[None], pred[None]
        ref = ref[None] if ref is not None else None
    picks = representative_slices(ref if ref is not None and ref.any() else pred, n_slices)
    lo, hi = np.percentile(vol, (0.5, 99.5))
    hi = hi if hi > lo else lo + 1.0
    flips = _display_flips(image.affine)
    sy, sx = image.spacing[-2:]
    names = {v: k for k, v in labels.items()}
    present: set[int] = set()

    rows = len(picks)
    fig = Figure(figsize=(3 * PANEL_INCHES, rows * PANEL_INCHES + 0.7))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 3, squeeze=False)
    for r, k in enumerate(picks):
        sl = vol[k]
        shown = _orient(sl, flips)
        rep = _orient(mlngm(np.ascontiguousarray(sl), levels=mlngm_levels, dims=2), flips)
        ax_img, ax_rep, ax_ov = axes[r]
        for ax in (ax_img, ax_ov):
            ax.imshow(shown, cmap="gray", vmin=lo, vmax=hi, aspect=sy / sx, interpolation="nearest")
        ax_rep.imshow(rep, cmap="gray", vmin=0, vmax=1, aspect=sy / sx, interpolation="nearest")
        for source, style in ((ref, "solid"), (pred, "dashed")):
            if source is None:
                continue
            s = _orient(source[k], flips)
            for v in sorted(int(u) for u in np.unique(s) if u != 0):
                present.add(v)
                ax_ov.contour((s == v).astype(np.float32), levels=[0.5], colors=[_colour(v)],
                              linewidths=1.2, linestyles=style)
        ax_img.set_ylabel(f"slice {k}", fontsize=8)
        for ax in (ax_img, ax_rep, ax_ov):
            ax.set_xticks([])
            ax.set_yticks([])
        if r == 0:
            ax_img.set_title("image", fontsize=9)
            ax_rep.set_title("MLNGM", fontsize=9)
            ax_ov.set_title("reference — / prediction - -" if ref is not None else "prediction - -", fontsize=9)
    handles = [Line2D([], [], color=_colour(v), lw=2, label=names.get(v, f"label {v}")) for v in sorted(present)]
    if ref is not None:
        handles.append(Line2D([], [], color="k", lw=1.2, ls="solid", label="reference"))
    handles.append(Line2D([], [], color="k", lw=1.2, ls="dashed", label="prediction"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.7 / (rows * PANEL_INCHES + 0.7), 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    return picks


# --------------------------------------------------------------------------------------------------
# Markdown -> HTML (just what summary.md uses: headings, pipe tables, lists, paragraphs, **bold**)


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def markdown_to_html(text: str) -> str:
    out: list[str] = []
    table: list[list[str]] = []
    in_list = False

    def flush_table() -> None:
        if not table:
            return
        out.append("<table>")
        for i, cells in enumerate(table):
            tag = "th" if i == 0 else "td"
            out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
        out.append("</table>")
        table.clear()

    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                table.append(cells)
            continue
        flush_table()
        if in_list and not s.startswith("- "):
            out.append("</ul>")
            in_list = False
        if not s:
            continue
        m = re.match(r"(#{1,6})\s+(.*)", s)
        if m:
            level = min(6, len(m.group(1)) + 2)  # nested below the report's own headings
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif s.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(s[2:])}</li>")
        else:
            out.append(f"<p>{_inline(s)}</p>")
    flush_table()
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# the report


@dataclass
class _CaseEntry:
    name: str
    png: str | None = None
    slices: list[int] = field(default_factory=list)
    dice: dict[str, float] = field(default_factory=dict)
    note: str = ""


def _run_labels(run_dir: Path | None) -> tuple[dict[str, int], int, dict]:
    """Labels, MLNGM levels and a few facts about the run (from plans.json / config.yaml)."""
    info: dict = {}
    labels: dict[str, int] = {}
    levels = 4
    if run_dir is None:
        return labels, levels, info
    if (run_dir / "plans.json").is_file():
        from lmisa.preprocess import load_plans

        plans = load_plans(run_dir / "plans.json")
        labels, levels = dict(plans.labels), plans.mlngm_levels
        info.update(input=plans.input, spacing=list(plans.spacing), size=list(plans.size),
                    context_slices=plans.context_slices)
    config = run_dir / "config.yaml"
    if config.is_file():
        cfg = read_config_mapping(config)
        info["variant"] = cfg.get("variant")
        train = cfg.get("train", {}) or {}
        info["epochs"] = train.get("epochs")
        info["steps_per_epoch"] = train.get("steps_per_epoch")
    return labels, levels, info


def _find_refs(ref_dir: Path | None) -> dict[str, Path]:
    if ref_dir is None:
        return {}
    from lmisa.evaluation import find_references

    refs, _ = find_references(ref_dir)  # EvaluationError is an LmisaError
    return refs


def _pred_file(pred_dir: Path, name: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        p = pred_dir / f"{name}{suffix}"
        if p.is_file():
            return p
    return None


def make_report(
    run_dir: str | Path | None,
    pred_dir: str | Path,
    image_source: str | Path,
    ref_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    max_cases: int = 8,
    summary: str | Path | None = None,
    overwrite: bool = False,
    title: str | None = None,
) -> Path:
    """Write the report (see the module docstring) and return the path of its ``index.html``.

    ``image_source``: the images the predictions were made from (anything ``lmisa predict -i``
    takes); cases are matched by name with ``<pred_dir>/<case>.nii.gz`` and, when ``ref_dir`` is
    given (a label folder or a data set root with ``labelsTr/``), with ``<case>.nii.gz`` there.
    The first ``max_cases`` matched cases (by name) get a figure. ``summary``: a ``summary.md`` to
    include (default: ``<pred_dir>/summary.md`` when it exists). Refuses to replace an existing
    report unless ``overwrite``. A case whose files disagree in shape is listed with the reason.
    """
    from lmisa.predict import list_inputs

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise LmisaError(f"{pred_dir}: prediction folder not found")
    run_dir = Path(run_dir) if run_dir is not None else None
    out_dir = Path(out_dir) if out_dir is not None else pred_dir / "report"
    index = out_dir / INDEX_HTML
    if index.exists() and not overwrite:
        raise LmisaError(f"{index}: exists (pass overwrite=True to replace the report)")
    labels, levels, info = _run_labels(run_dir)
    cases, _ = list_inputs(image_source)
    refs = _find_refs(Path(ref_dir) if ref_dir is not None else None)
    matched = [(c, p) for c in cases if (p := _pred_file(pred_dir, c.name)) is not None]
    if not matched:
        raise LmisaError(f"{pred_dir}: no prediction matches an image of {image_source}")
    shown, left_out = matched[:max_cases], matched[max_cases:]

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CASES_DIR).mkdir(exist_ok=True)
    entries: list[_CaseEntry] = []
    for case, pred_path in shown:
        entry = _CaseEntry(case.name)
        entries.append(entry)
        try:
            image = case.read()
            pred = read_label(pred_path).array
            ref = read_label(refs[case.name]).array if case.name in refs else None
            for what, arr in (("prediction", pred), ("reference", ref)):
                if arr is not None and arr.shape != image.array.shape:
                    raise LmisaError(f"{what} shape {arr.shape} differs from the image's {image.array.shape}")
            case_labels = dict(labels) or {f"label_{v}": int(v) for v in np.unique(pred) if v}
            png = out_dir / CASES_DIR / f"{case.name}.png"
            entry.slices = case_figure(image, pred, ref, case_labels, png, title=case.name, mlngm_levels=levels)
            entry.png = f"{CASES_DIR}/{png.name}"
            if ref is not None:
                for name, v in sorted(case_labels.items(), key=lambda kv: kv[1]):
                    if v == 0:
                        continue
                    d = _dice(pred, ref, v)
                    if d is not None:
                        entry.dice[name] = d
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            entry.note = f"not shown: {msg}"

    progress = None
    if run_dir is not None and (run_dir / "progress.png").is_file():
        shutil.copyfile(run_dir / "progress.png", out_dir / "progress.png")
        progress = "progress.png"
    summary_path = Path(summary) if summary is not None else pred_dir / "summary.md"
    if summary is not None and not summary_path.is_file():
        raise LmisaError(f"{summary_path}: summary file not found")
    summary_text = summary_path.read_text(encoding="utf-8") if summary_path.is_file() else None

    title = title or f"lmisa report: {pred_dir.name}"
    facts = [f"predictions: {pred_dir}", f"images: {image_source}"]
    if ref_dir is not None:
        facts.append(f"reference: {ref_dir}")
    if run_dir is not None:
        facts.append(f"run: {run_dir}")
    if info:
        facts.append(", ".join(f"{k} {v}" for k, v in info.items() if v is not None))
    if left_out:
        facts.append(f"{len(left_out)} more case(s) not shown (max_cases={max_cases})")

    _write(out_dir / INDEX_MD, _markdown(title, facts, entries, progress, summary_text, ref_dir is not None))
    _write(index, _html(title, facts, entries, progress, summary_text, ref_dir is not None))
    return index


def _legend_text(has_ref: bool) -> str:
    return ("Columns: image, MLNGM, contours (reference solid, prediction dashed)." if has_ref
            else "Columns: image, MLNGM, predicted contours (dashed); no reference.")


def _markdown(title, facts, entries, progress, summary_text, has_ref) -> str:
    lines = [f"# {title}", "", *[f"- {f}" for f in facts], ""]
    if summary_text:
        lines += ["## Evaluation", ""]
        lines += [("#" + l if l.startswith("#") else l) for l in summary_text.strip().splitlines()]
        lines.append("")
    if progress:
        lines += ["## Training", "", f"![training curves]({progress})", ""]
    lines += ["## Cases", "", _legend_text(has_ref), ""]
    for e in entries:
        lines.append(f"### {e.name}")
        lines.append("")
        if e.dice:
            lines += ["Dice: " + ", ".join(f"{k} {v:.1f}" for k, v in e.dice.items()), ""]
        if e.png:
            lines += [f"![{e.name}]({e.png})", ""]
        if e.note:
            lines += [e.note, ""]
    return "\n".join(lines)


def _html(title, facts, entries, progress, summary_text, has_ref) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#a33}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        "<ul>" + "".join(f"<li>{esc(f)}</li>" for f in facts) + "</ul>",
    ]
    if summary_text:
        parts += ["<h2>Evaluation</h2>", markdown_to_html(summary_text)]
    if progress:
        parts += ["<h2>Training</h2>", f'<img src="{esc(progress)}" alt="training curves">']
    parts += ["<h2>Cases</h2>", f"<p>{esc(_legend_text(has_ref))}</p>"]
    for e in entries:
        parts.append(f"<h3>{esc(e.name)}</h3>")
        if e.dice:
            parts.append("<p>Dice: " + ", ".join(f"{esc(k)} {v:.1f}" for k, v in e.dice.items()) + "</p>")
        if e.png:
            parts.append(f'<img src="{esc(e.png)}" alt="{esc(e.name)}">')
        if e.note:
            parts.append(f'<p class="note">{esc(e.note)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _write(path: Path, text: str) -> None:
    """Atomic text write, with a new file's usual permissions (a report is meant to be shared or served)."""
    from lmisa.io import write_text_atomic

    write_text_atomic(path, text)
