"""Evaluate a folder of predicted label maps against reference labels, as the literature reports it.

``evaluate_folders(pred_dir, ref_dir, labels, out_dir, protocol)`` pairs files by case name,
computes the per-structure metrics of :mod:`lmisa.metrics` for every case, and writes three files
into ``out_dir`` (atomically; existing files are never replaced unless ``overwrite=True``):

``metrics_per_case.csv``
    one row per (case, structure): ``case, structure, dice, assd_vox, assd_mm, hd95_mm,
    pred_empty, ref_empty`` (flags as 0/1, undefined distances as ``nan``).
``summary.json``
    per structure, for each metric: ``mean``, ``std`` (population std over cases, ``ddof=0``, as
    numpy's default and the SIFA-style evaluation scripts) and ``n`` (the number of cases the mean is
    taken over), plus ``counts``: ``n_cases``, ``n_both_empty`` (absent and not predicted),
    ``n_missed`` (in the reference, not predicted) and ``n_false_positive`` (predicted, absent from
    the reference); ``mean_over_structures``: for each metric the mean of the per-structure means
    (the literature's "Mean" column) and how many structures entered it; the protocol, the case
    list and the missing predictions.
``summary.md``
    a Markdown table, one row per structure (``mean ± std`` of each metric and its ``n``) and a
    last row with the mean over structures.

Both summaries also say where the errors are (:mod:`lmisa.confusion`, all cases pooled): which label
each structure's reference voxels received (misses, confusions between structures) and how many
voxels were predicted as a structure on the reference's background, and of those how many on axial
slices that hold none of it (``summary.json``: ``errors``, raw voxel counts; ``summary.md``: percent
of each structure's reference voxels).

Reference folder: either a folder of label maps (``labelsTr``-like: ``<case>.nii.gz``) or an
nnU-Net data set root holding ``labelsTr/`` (and usually ``dataset.json``). Predictions are
``<pred_dir>/<case>.nii.gz`` (or ``.nii``); other files in ``pred_dir`` are ignored.

Labels (name -> value, value 0 = background is never scored): the ``labels`` argument (a mapping,
or the path of a ``dataset.json``, nnU-Net v2 ``{"name": value}`` or v1 ``{"value": "name"}``); else
the reference root's ``dataset.json``; else every non-zero value found in the references or the
predictions, named ``label_<value>``.

Empty structures follow :mod:`lmisa.metrics`: both empty -> Dice 100 and distances 0; one empty ->
Dice 0 and NaN distances in the per-case row, flagged. Means use only the defined (non-NaN)
values and always come with their count ``n``; a structure whose distances are all undefined gets
a ``null`` mean with ``n = 0``, never a silent NaN.

Missing predictions: a reference case without a prediction is an error that lists the missing
cases, unless ``allow_missing=True``; then the other cases are evaluated and the missing ones are
listed in ``summary.json``/``summary.md`` (a silently smaller test set would make numbers
incomparable). Predictions without a reference are ignored and listed the same way.

Geometry: prediction and reference must have the same shape and the same affine (to 1e-3 mm);
otherwise an error names both files. Distances in mm use the reference's spacing.

Protocols: ``"volume"`` scores whole volumes; ``"organ_slices"`` first keeps, per case, only the
axial slices from the first to the last one that holds a reference label of ``labels``
(:func:`lmisa.metrics.restrict_to_label_slices`).

Parallelism: ``workers=1`` (the default) scores cases one after the other in this process;
``workers=k`` uses a pool of ``k`` spawned processes. Measured on this project's shared 2-core
machine (6 synthetic 90x384x384 cases, 4 structures, load average ~10 from other users):
1 worker 8.4-11.9 s wall / 3.1 s CPU, 2 workers 13.1-15.2 s wall / 4.0-4.4 s CPU; a case costs ~0.5 s
of CPU (reading two NIfTI files and the metrics), so the ~0.5-1 s import cost of each worker
process is not repaid unless there are many cases and free cores. Hence 1 by default; pass 2 or
more on an idle multi-core machine.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from lmisa.confusion import ErrorCounts, confusion_matrix, error_counts, error_shares
from lmisa.datasets import label_values
from lmisa.errors import LmisaError
from lmisa.io import JsonFileError, is_nifti, read_json_object, read_label, strip_nifti_suffix, write_text_atomic
from lmisa.metrics import FLAG_NAMES, METRIC_NAMES, evaluate_case, restrict_to_label_slices

PROTOCOLS = ("volume", "organ_slices")
OUTPUT_FILES = ("metrics_per_case.csv", "summary.json", "summary.md")
CSV_COLUMNS = ("case", "structure", *METRIC_NAMES, *FLAG_NAMES)
METRIC_TITLES = {"dice": "Dice (%)", "assd_vox": "ASSD (vox)", "assd_mm": "ASSD (mm)", "hd95_mm": "HD95 (mm)"}
AFFINE_ATOL_MM = 1e-3

__all__ = [
    "PROTOCOLS",
    "OUTPUT_FILES",
    "Summary",
    "evaluate_folders",
    "load_labels",
    "find_references",
    "find_predictions",
    "summarize",
]


class EvaluationError(LmisaError):
    """Inputs of an evaluation that cannot be paired or compared; the message names the files."""


# --------------------------------------------------------------------------------------------- labels


def load_labels(path: str | os.PathLike) -> dict[str, int]:
    """Read the labels of an nnU-Net ``dataset.json`` (v2 ``name -> value`` or v1 ``value -> name``)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: labels file not found")
    try:
        raw = read_json_object(path).get("labels")
    except JsonFileError as exc:
        raise EvaluationError(str(exc)) from None
    if not isinstance(raw, dict) or not raw:
        raise EvaluationError(f"{path}: no 'labels' mapping in this file")
    labels: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, str) and str(key).lstrip("-").isdigit():  # nnU-Net v1: {"1": "liver"}
            name, val = value, int(key)
        elif isinstance(value, int) and not isinstance(value, bool):  # nnU-Net v2: {"liver": 1}
            name, val = str(key), value
        else:
            raise EvaluationError(
                f"{path}: label {key!r} -> {value!r} is not a single integer value "
                "(region-based labels are not supported)"
            )
        if not 0 <= val <= 255:
            raise EvaluationError(f"{path}: label {name!r} has value {val} outside 0..255")
        labels[name] = val
    return labels


def _normalise_labels(labels: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    seen: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 255:
            raise EvaluationError(f"label {name!r}: value must be an integer in 0..255, got {value!r}")
        value = int(value)
        if value == 0:
            continue
        if value in seen:
            raise EvaluationError(f"labels {seen[value]!r} and {name!r} share the value {value}")
        seen[value] = str(name)
        out[str(name)] = value
    if not out:
        raise EvaluationError("no foreground label to evaluate (only background given)")
    return out


# --------------------------------------------------------------------------------------------- files


def _nifti_cases(folder: Path, what: str) -> dict[str, Path]:
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not is_nifti(path):
            continue
        case = strip_nifti_suffix(path.name)
        if case in cases:
            raise EvaluationError(f"{folder}: two {what} files for case {case!r} ({cases[case].name}, {path.name})")
        cases[case] = path
    return cases


def find_references(ref_dir: str | os.PathLike) -> tuple[dict[str, Path], Path | None]:
    """Reference label maps by case name, and the data set's ``dataset.json`` when there is one.

    ``ref_dir`` is a folder of label maps or a data set root with ``labelsTr/``.
    """
    ref_dir = Path(ref_dir)
    if not ref_dir.is_dir():
        raise EvaluationError(f"{ref_dir}: reference folder not found")
    if (ref_dir / "labelsTr").is_dir():
        folder, dataset_json = ref_dir / "labelsTr", ref_dir / "dataset.json"
    else:
        folder, dataset_json = ref_dir, ref_dir.parent / "dataset.json"
        if ref_dir.name not in ("labelsTr", "labelsTs"):
            dataset_json = ref_dir / "dataset.json"
    refs = _nifti_cases(folder, "reference")
    if not refs:
        raise EvaluationError(f"{ref_dir}: no reference label maps (.nii.gz) here nor in labelsTr/")
    return refs, (dataset_json if dataset_json.is_file() else None)


def find_predictions(pred_dir: str | os.PathLike) -> dict[str, Path]:
    """Predicted label maps ``<case>.nii.gz`` (or ``.nii``) by case name."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: prediction folder not found")
    preds = _nifti_cases(pred_dir, "prediction")
    if not preds:
        raise EvaluationError(f"{pred_dir}: no prediction files (<case>.nii.gz)")
    return preds


def _short_list(names: Iterable[str], limit: int = 10) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def undeclared_by_value(by_case: Mapping[str, Iterable[int]]) -> str:
    """``{case: [values]}`` as "7 in 198 case(s) (case_000, ...)", one part per value: the usual cause, a model
    trained on more structures, puts the same values in every case."""
    cases_of: dict[int, list[str]] = {}
    for case, values in by_case.items():
        for v in values:
            cases_of.setdefault(int(v), []).append(case)
    return "; ".join(f"{v} in {len(c)} case(s) ({_short_list(c, 5)})" for v, c in sorted(cases_of.items()))


# --------------------------------------------------------------------------------------------- one case


def undeclared_values(values: Iterable[int], labels: Mapping[str, int]) -> list[int]:
    """The ``values`` other than background (0) and ``labels``' values, sorted."""
    return sorted({int(v) for v in values} - {0} - set(labels.values()))


def check_declared_values(path: str | os.PathLike, values: Iterable[int], labels: Mapping[str, int]) -> None:
    """Raise EvaluationError naming ``path`` if the ``values`` of a reference map (``datasets.label_values``)
    hold one other than background (0) and ``labels``': a map that contradicts its own data set's dataset.json."""
    undeclared = undeclared_values(values, labels)
    if undeclared:
        raise EvaluationError(
            f"{path}: label values {undeclared} are not in its data set's labels "
            f"({', '.join(f'{k}={v}' for k, v in labels.items())}); fix the map or the dataset.json"
        )


def _evaluate_one(
    case: str, pred_path: str, ref_path: str, labels: dict[str, int] | None, protocol: str, strict: bool = False
) -> tuple[str, dict[str, dict[str, Any]], tuple[int, ...], ErrorCounts]:
    """Worker: read, check geometry, score. Returns (case, metrics by structure, shape scored, error counts).
    ``strict``: ``labels`` are the reference data set's own, so any other value in a reference is an error.
    (A prediction may hold more labels than the reference, from a model trained on more: those count as
    background, and ``Summary.undeclared_by_case`` names them.)"""
    pred_img, ref_img = read_label(pred_path), read_label(ref_path)
    if strict and labels is not None:
        check_declared_values(ref_path, label_values(ref_img.array), labels)
    if pred_img.shape != ref_img.shape:
        raise EvaluationError(
            f"{pred_path}: shape {pred_img.shape} does not match the reference {ref_path} {ref_img.shape}"
        )
    if not np.allclose(pred_img.affine[:3], ref_img.affine[:3], rtol=0, atol=AFFINE_ATOL_MM):
        raise EvaluationError(
            f"{pred_path}: geometry (affine) does not match the reference {ref_path}: "
            f"spacing {tuple(round(s, 4) for s in pred_img.spacing)} vs {tuple(round(s, 4) for s in ref_img.spacing)}, "
            f"origin {tuple(np.round(pred_img.affine[:3, 3], 3).tolist())} vs {tuple(np.round(ref_img.affine[:3, 3], 3).tolist())}"
        )
    pred, ref = pred_img.array, ref_img.array
    if labels is None:
        values = sorted((set(np.unique(pred).tolist()) | set(np.unique(ref).tolist())) - {0})
        labels = {f"label_{v}": int(v) for v in values}
    if protocol == "organ_slices":
        pred, ref = restrict_to_label_slices(pred, ref, labels)
    result = evaluate_case(pred, ref, labels, ref_img.spacing)
    return case, result, tuple(pred.shape), error_counts(pred, ref, labels.values())


def _absent_row() -> dict[str, Any]:
    return {"dice": 100.0, "assd_vox": 0.0, "assd_mm": 0.0, "hd95_mm": 0.0, "pred_empty": True, "ref_empty": True}


# --------------------------------------------------------------------------------------------- summary


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Summary:
    """Everything an evaluation produced; ``rows`` are the per-case rows of the CSV."""

    protocol: str
    labels: dict[str, int]
    cases: list[str]
    rows: list[dict[str, Any]]
    per_structure: dict[str, dict[str, dict[str, float | int | None]]]
    counts: dict[str, dict[str, int]]
    mean_over_structures: dict[str, dict[str, float | int | None]]
    missing_predictions: list[str] = field(default_factory=list)
    unmatched_predictions: list[str] = field(default_factory=list)
    errors: ErrorCounts | None = None
    out_dir: Path | None = None
    # case -> the values its prediction holds in the scored region that no scored structure has (as background)
    undeclared_by_case: dict[str, list[int]] = field(default_factory=dict)

    @property
    def undeclared_predicted(self) -> list[int]:
        """The values of ``undeclared_by_case``, over all cases."""
        return sorted({v for values in self.undeclared_by_case.values() for v in values})

    def errors_dict(self) -> dict[str, Any] | None:
        """Where the errors are, in voxels: the confusion matrix over background and the structures
        (rows reference, columns prediction) and the false positives beyond each structure's extent."""
        if self.errors is None:
            return None
        return {
            "classes": ["background", *self.labels],
            "confusion_voxels": confusion_matrix(self.errors, list(self.labels.values())).tolist(),
            "false_positive_beyond_extent_voxels": {
                name: int(self.errors.beyond_extent.get(v, 0)) for name, v in self.labels.items()
            },
        }

    def errors_markdown(self) -> list[str]:
        """The ``summary.md`` section of :meth:`errors_dict`, in percent of each structure's reference voxels."""
        errors = self.errors_dict()
        if errors is None:
            return []
        names, m = errors["classes"], np.asarray(errors["confusion_voxels"], dtype=np.float64)
        shares = error_shares(m, list(errors["false_positive_beyond_extent_voxels"].values()), names[1:])
        lines = [
            "## Where the errors are (all cases pooled)",
            "",
            "Percent of each structure's reference voxels, by the label predicted there (background = missed):",
            "",
            "| reference \\ predicted | " + " | ".join(names) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(names)) + "|",
        ]
        fp = []
        for i, name in enumerate(names[1:], start=1):
            if name not in shares:
                lines.append(f"| {name} | " + " | ".join(["n/a"] * len(names)) + " |")
                fp.append(f"{name} {int(m[0, i])} voxels (absent from every reference)")
                continue
            lines.append(f"| {name} | " + " | ".join(f"{100 * c / m[i].sum():.1f}" for c in m[i]) + " |")
            share = shares[name]
            fp.append(f"{name} {share['false_positive']:.1f} ({share['beyond_extent']:.1f} on slices without {name})")
        lines += ["", "Predicted on the reference's background, in percent of the structure's reference voxels "
                  "(in brackets: predicted on axial slices that hold none of it): " + "; ".join(fp) + "."]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The content of ``summary.json`` (NaN never appears: undefined means are ``None``)."""
        return {
            "protocol": self.protocol,
            "n_cases": len(self.cases),
            "labels": self.labels,
            "metrics": {m: METRIC_TITLES[m] for m in METRIC_NAMES},
            "per_structure": {
                s: {**{m: dict(v) for m, v in metrics.items()}, "counts": dict(self.counts[s])}
                for s, metrics in self.per_structure.items()
            },
            "mean_over_structures": {m: dict(v) for m, v in self.mean_over_structures.items()},
            "conventions": {
                "std": "population standard deviation over cases (ddof=0)",
                "both_empty": "Dice 100, distances 0 (structure absent and not predicted)",
                "one_empty": "Dice 0, distances undefined (NaN in the CSV) and left out of the distance means; "
                "n gives the number of cases each mean is over",
                "assd": "medpy-style: mean of the two directed average surface distances",
                "hd95": "medpy-style: 95th percentile of the union of both directed surface distance sets",
                "mean_over_structures": "mean of the per-structure means",
            },
            "cases": list(self.cases),
            "missing_predictions": list(self.missing_predictions),
            "unmatched_predictions": list(self.unmatched_predictions),
            "errors": self.errors_dict(),
            "undeclared_by_case": dict(self.undeclared_by_case),
        }

    def table_rows(self) -> list[list[str]]:
        """Rows of the summary table (structure, then ``mean ± std (n)`` per metric), last the mean."""
        rows = []
        for s, metrics in self.per_structure.items():
            row = [s]
            for m in METRIC_NAMES:
                v = metrics[m]
                if v["mean"] is None:
                    row.append("n/a (n=0)")
                else:
                    row.append(f"{v['mean']:.2f} ± {v['std']:.2f}" + ("" if v["n"] == len(self.cases) else f" (n={v['n']})"))
            rows.append(row)
        mean_row = ["**Mean**"]
        for m in METRIC_NAMES:
            v = self.mean_over_structures[m]
            mean_row.append("n/a" if v["mean"] is None else f"**{v['mean']:.2f}**")
        rows.append(mean_row)
        return rows

    def to_markdown(self) -> str:
        """The content of ``summary.md``."""
        header = ["Structure", *(METRIC_TITLES[m] for m in METRIC_NAMES)]
        lines = [
            f"# Evaluation ({self.protocol}, {len(self.cases)} cases)",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(METRIC_NAMES)) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in self.table_rows()]
        lines += ["", "mean ± population std over cases; (n=k) when a mean is over fewer cases than all."]
        notes = []
        for s, c in self.counts.items():
            parts = []
            if c["n_missed"]:
                parts.append(f"missed (not predicted) in {c['n_missed']}")
            if c["n_false_positive"]:
                parts.append(f"predicted but absent from the reference in {c['n_false_positive']}")
            if c["n_both_empty"]:
                parts.append(f"absent and not predicted in {c['n_both_empty']} (Dice 100, distances 0)")
            if parts:
                notes.append(f"- {s}: " + "; ".join(parts) + " case(s); distances undefined where one side is empty.")
        if notes:
            lines += ["", "Empty structures:", *notes]
        if self.errors is not None:
            lines += ["", *self.errors_markdown()]
        if self.missing_predictions:
            lines += ["", f"Missing predictions (not evaluated): {', '.join(self.missing_predictions)}"]
        if self.unmatched_predictions:
            lines += ["", f"Predictions without a reference (ignored): {', '.join(self.unmatched_predictions)}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The content of ``metrics_per_case.csv``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows:
            out = [row["case"], row["structure"]]
            out += [format(float(row[m]), ".10g") if math.isfinite(row[m]) else "nan" for m in METRIC_NAMES]
            out += [int(bool(row[f])) for f in FLAG_NAMES]
            writer.writerow(out)
        return buf.getvalue()


def summarize(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    labels: Mapping[str, int],
    protocol: str = "volume",
    missing_predictions: Iterable[str] = (),
    unmatched_predictions: Iterable[str] = (),
    errors: ErrorCounts | None = None,
    undeclared_by_case: Mapping[str, list[int]] | None = None,
) -> Summary:
    """Build a Summary from ``{case: {structure: metrics}}`` (the output of ``evaluate_case`` per case)
    and, optionally, the error counts of all cases (:func:`lmisa.confusion.error_counts`, summed) and the
    predicted values no structure has, per case."""
    cases = list(results)
    rows: list[dict[str, Any]] = []
    per_structure: dict[str, dict[str, dict[str, float | int | None]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for s in labels:
        for case in cases:
            rows.append({"case": case, "structure": s, **results[case][s]})
        recs = [results[case][s] for case in cases]
        per_structure[s] = {}
        for m in METRIC_NAMES:
            vals = np.array([float(r[m]) for r in recs], dtype=np.float64)
            finite = vals[np.isfinite(vals)]
            per_structure[s][m] = {
                "mean": _clean(float(finite.mean())) if finite.size else None,
                "std": _clean(float(finite.std())) if finite.size else None,
                "n": int(finite.size),
            }
        pe = np.array([bool(r["pred_empty"]) for r in recs], dtype=bool)
        re_ = np.array([bool(r["ref_empty"]) for r in recs], dtype=bool)
        counts[s] = {
            "n_cases": len(recs),
            "n_both_empty": int((pe & re_).sum()),
            "n_missed": int((pe & ~re_).sum()),
            "n_false_positive": int((~pe & re_).sum()),
        }
    mean_over: dict[str, dict[str, float | int | None]] = {}
    for m in METRIC_NAMES:
        means = [v[m]["mean"] for v in per_structure.values() if v[m]["mean"] is not None]
        mean_over[m] = {"mean": _clean(float(np.mean(means))) if means else None, "n_structures": len(means)}
    return Summary(
        protocol=protocol,
        labels=dict(labels),
        cases=cases,
        rows=rows,
        per_structure=per_structure,
        counts=counts,
        mean_over_structures=mean_over,
        missing_predictions=list(missing_predictions),
        unmatched_predictions=list(unmatched_predictions),
        errors=errors,
        undeclared_by_case=dict(undeclared_by_case or {}),
    )


# --------------------------------------------------------------------------------------------- writing


# --------------------------------------------------------------------------------------------- main entry


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    labels: Mapping[str, int] | str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    protocol: str = "volume",
    *,
    overwrite: bool = False,
    allow_missing: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Score every prediction of ``pred_dir`` against ``ref_dir`` and write the three outputs into
    ``out_dir`` (default: ``pred_dir``); see the module docstring for every convention.

    Raises EvaluationError (an LmisaError) for unpairable inputs, missing predictions (unless
    ``allow_missing``), mismatched geometry or an ``out_dir`` that is a file, and FileExistsError before any
    work when an output exists and ``overwrite`` is False.
    """
    if protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    refs, dataset_json = find_references(ref_dir)
    preds = find_predictions(pred_dir)

    strict = labels is None and dataset_json is not None  # the reference's own labels: nothing else may appear
    if strict:
        labels = load_labels(dataset_json)
    elif isinstance(labels, (str, os.PathLike)):
        labels = load_labels(labels)
    fixed_labels = _normalise_labels(labels) if labels is not None else None

    missing = sorted(set(refs) - set(preds))
    unmatched = sorted(set(preds) - set(refs))
    cases = sorted(set(refs) & set(preds))
    if not cases:
        raise EvaluationError(
            f"{pred_dir}: no prediction matches a reference case of {ref_dir} "
            f"(predictions: {_short_list(sorted(preds), 5)}; references: {_short_list(sorted(refs), 5)})"
        )
    if missing and not allow_missing:
        raise EvaluationError(
            f"{pred_dir}: no prediction for {len(missing)} of {len(refs)} reference cases: {_short_list(missing)} "
            "(use allow_missing / --allow-missing to evaluate the others)"
        )

    out = Path(out_dir) if out_dir is not None else Path(pred_dir)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"{out}: is a file; the results go into a folder (CSV, JSON and Markdown)")
    out_paths = [out / name for name in OUTPUT_FILES]
    if not overwrite:
        for p in out_paths:
            if p.exists():
                raise FileExistsError(f"{p}: exists (pass overwrite=True / --overwrite to replace it)")

    jobs = [(c, str(preds[c]), str(refs[c]), fixed_labels, protocol, strict) for c in cases]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    errors = ErrorCounts()
    predicted_values: dict[str, set[int]] = {}
    n_workers = max(1, min(int(workers), len(jobs)))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
        transient=True,
    )
    failed: list[str] = []  # one line per case that cannot be scored; every case is tried first

    def collect(outcome: Callable[[], tuple]) -> None:
        nonlocal errors
        try:
            case, res, _, counts = outcome()
        except LmisaError as exc:
            failed.append(str(exc))
            return
        results[case] = res
        errors += counts
        predicted_values[case] = {p for _, p in counts.pairs}

    with bar:
        task = bar.add_task("evaluating", total=len(jobs))
        if n_workers == 1:
            for job in jobs:
                collect(lambda: _evaluate_one(*job))
                bar.advance(task)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(_evaluate_one, *job) for job in jobs]
                try:
                    for fut in futures:  # in case order, so problems are listed by case
                        collect(fut.result)
                        bar.advance(task)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    if failed:
        raise EvaluationError(failed[0] if len(failed) == 1 else
                              f"{pred_dir}: {len(failed)} case(s) could not be scored\n" + "\n".join(failed))

    if fixed_labels is None:  # labels from the values found: a value absent in both maps of a case is "both empty"
        values = sorted({int(s.split("_", 1)[1]) for res in results.values() for s in res})
        if not values:
            raise EvaluationError(f"{ref_dir}: no foreground label in any reference or prediction, nothing to score")
        fixed_labels = {f"label_{v}": v for v in values}
        for res in results.values():
            for name in fixed_labels:
                res.setdefault(name, _absent_row())

    summary = summarize(
        {c: results[c] for c in cases},
        fixed_labels,
        protocol=protocol,
        missing_predictions=missing,
        unmatched_predictions=unmatched,
        errors=errors,
        undeclared_by_case={c: v for c in cases if (v := undeclared_values(predicted_values[c], fixed_labels))},
    )
    out.mkdir(parents=True, exist_ok=True)
    texts = (summary.to_csv(), json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n", summary.to_markdown())
    for path, text in zip(out_paths, texts):
        write_text_atomic(path, text, overwrite)
    summary.out_dir = out
    return summary
