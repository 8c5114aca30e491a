"""One report of a classifier's last layer: accuracy and the papers' interpretability metrics.

``evaluate(model, test_features, ground truth…) -> Report`` measures; ``compare(*reports,
paper=...)`` puts several side by side (HTML in Jupyter), each paper number with its source;
``Claim`` holds a chapter's verdict and its one threshold. QPM's own metrics (contrastiveness,
structural grounding, contrastive pairs) live here; the others in
:mod:`companion.metrics.interpretability`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, fields
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from ..batches import to_numpy
from ..features import FeatureSet
from ..metrics.interpretability import (
    class_independence,
    compactness,
    dependence,
    diversity_at_k,
    part_alignment,
)


def contrastiveness(features, seed: int = 0) -> float:
    """Contrastiveness: 1 − mean_j overlap of a two-component Gaussian mixture fit to feature j.

    High when every feature is clearly on or off (two well-separated modes).
    """
    f = to_numpy(features, float)
    overlaps = []
    for j in range(f.shape[1]):
        x = f[:, j:j + 1]
        if np.ptp(x) == 0:
            overlaps.append(1.0)
            continue
        gmm = GaussianMixture(2, random_state=seed).fit(x)
        sd = np.sqrt(gmm.covariances_.reshape(-1))
        a, b = (NormalDist(float(m), float(s)) for m, s in zip(gmm.means_.reshape(-1), sd, strict=True))
        overlaps.append(a.overlap(b))
    return float(1.0 - np.mean(overlaps))


def _cosine_offdiag(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    unit = X / np.where(norms > 0, norms, 1.0)
    S = unit @ unit.T
    np.fill_diagonal(S, 0.0)
    return S


def structural_grounding(weight, class_attributes, n_pairs: int = 25) -> float:
    """Structural grounding: do the classes the truth calls most similar share features in W?

    ``S_model = cos(W_c, W_c')`` and ``S_gt = cos(a_c, a_c')`` (diagonals 0); over the ``2·n_pairs``
    largest entries T of S_gt, ``SG = Σ_T S_model / Σ_T S_gt`` (the paper: 25 CUB class pairs).
    """
    W, G = to_numpy(weight, float), to_numpy(class_attributes, float)
    if W.shape[0] != G.shape[0]:
        raise ValueError(f"weight and class_attributes need one row per class; got {W.shape[0]} "
                         f"and {G.shape[0]} rows.")
    s_model, s_gt = _cosine_offdiag(W), _cosine_offdiag(G)
    n = min(2 * n_pairs, W.shape[0] * (W.shape[0] - 1))
    top = np.argsort(-s_gt.reshape(-1), kind="stable")[:n]
    denom = s_gt.reshape(-1)[top].sum()
    if denom <= 0:
        raise ValueError("class_attributes give no similar class pairs (all cosines ≤ 0).")
    return float(s_model.reshape(-1)[top].sum() / denom)


def contrastive_pairs(assignment, shared: int | None = None) -> list[tuple[int, int]]:
    """Class pairs (c, c') whose feature sets share ``shared`` features (default k − 1)."""
    W = np.asarray(assignment) != 0
    k = int(W.sum(1).max())
    shared = k - 1 if shared is None else shared
    overlap = W.astype(int) @ W.T.astype(int)
    i, j = np.nonzero(np.triu(overlap == shared, 1))
    return list(zip(i.tolist(), j.tolist(), strict=True))


@dataclass(frozen=True)
class Report:
    """The metrics of one model on test features; None where the data lacks the ground truth."""

    name: str
    accuracy: float
    features_used: int
    per_class: float
    k: int
    diversity: float | None  # diversity@k (SLDD's Loc5), needs maps
    sid: float | None  # SID@k (QPM), needs maps
    dependence: float
    class_independence: float
    contrastiveness: float | None  # None: not computed (too many features)
    structural_grounding: float | None  # needs a class–concept matrix
    alignment: float | None  # share of a feature's activation on its best part (needs part maps)
    alignment_lift: float | None  # that share over the part's area (× chance)
    own_parts: float | None  # share of a class's features that fire on one of its own parts
    own_parts_chance: float | None  # what a random part would give

    def _repr_html_(self) -> str:
        return compare(self)._repr_html_()

    def __repr__(self) -> str:
        return repr(compare(self))


@dataclass(frozen=True)
class Cited:
    """A number from a paper and where it stands (e.g. "QPM, Table 2, CUB, ResNet-50")."""

    value: float | str
    source: str


LABELS = {"accuracy": "accuracy", "features_used": "features used", "per_class":
          "features per class", "diversity": "diversity@k", "sid": "SID@k",
          "dependence": "dependence", "class_independence": "class independence",
          "contrastiveness": "contrastiveness", "structural_grounding": "structural grounding",
          "alignment": "activation on best part", "alignment_lift": "best part vs chance (×)",
          "own_parts": "features on own parts", "own_parts_chance": "own parts by chance"}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3f}" if np.isfinite(value) else "not computed"
    return str(value)


class ReportTable:
    """Reports side by side, rows = metrics, with the paper's numbers (and sources) beside ours."""

    def __init__(self, reports: tuple[Report, ...],
                 paper: Mapping[str, Mapping[str, Cited]] | None = None):
        self.reports, self.paper = reports, dict(paper or {})
        keys = [f.name for f in fields(Report) if f.name not in ("name", "k")]
        cited = {m for col in self.paper.values() for m in col}
        self.rows = [m for m in keys if any(getattr(r, m) is not None for r in reports)
                     or m in cited]
        self.sources = list(dict.fromkeys(c.source for col in self.paper.values()
                                          for c in col.values()))

    def __getitem__(self, name: str) -> Report:
        return next(r for r in self.reports if r.name == name)

    def _label(self, metric: str) -> str:
        k = self.reports[0].k
        return LABELS[metric].replace("@k", f"@{k}")

    def _paper_cell(self, col: str, metric: str) -> tuple[str, int | None]:
        c = self.paper[col].get(metric)
        return ("–", None) if c is None else (_cell(c.value), self.sources.index(c.source) + 1)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(r.name)}</th>" for r in self.reports)
        head += "".join(f"<th>{html.escape(c)}</th>" for c in self.paper)
        body = []
        for m in self.rows:
            cells = "".join(f"<td>{_cell(getattr(r, m))}</td>" for r in self.reports)
            for col in self.paper:
                text, note = self._paper_cell(col, m)
                cells += f"<td>{text}" + (f"<sup>{note}</sup>" if note else "") + "</td>"
            body.append(f"<tr><th style='text-align:left'>{self._label(m)}</th>{cells}</tr>")
        notes = "".join(f"<li>{html.escape(s)}</li>" for s in self.sources)
        foot = f"<ol style='font-size:smaller'>{notes}</ol>" if notes else ""
        return (f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}"
                f"</tbody></table>{foot}")

    def __repr__(self) -> str:
        table = [[r.name for r in self.reports] + list(self.paper)]
        for m in self.rows:
            cells = [_cell(getattr(r, m)) for r in self.reports]
            for col in self.paper:
                text, note = self._paper_cell(col, m)
                cells.append(text + (f" [{note}]" if note else ""))
            table.append(cells)
        widths = [max(len(row[j]) for row in table) + 2 for j in range(len(table[0]))]
        lines = [f"{label:24s}" + "".join(f"{c:>{w}s}" for c, w in zip(row, widths, strict=True))
                 for label, row in zip(["", *map(self._label, self.rows)], table, strict=True)]
        lines += [f"[{i}] {s}" for i, s in enumerate(self.sources, 1)]
        return "\n".join(lines)


def compare(*reports: Report, paper: Mapping[str, Mapping[str, Cited]] | None = None
            ) -> ReportTable:
    """Reports side by side; ``paper`` maps a column name to ``{metric: Cited(value, source)}``."""
    if not reports:
        raise ValueError("compare needs at least one Report.")
    unknown = {m for col in (paper or {}).values() for m in col} - set(LABELS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; use {sorted(LABELS)}.")
    return ReportTable(tuple(reports), paper)


def _optional(metric, *args, **kwargs) -> float | None:
    """A metric that needs k non-zero weights in some class: None where none has them."""
    try:
        return metric(*args, **kwargs)
    except ValueError as err:
        if "non-zero weights" in str(err):
            return None
        raise


def evaluate(model: Any, features: FeatureSet, *, name: str = "model", k: int = 5,
             class_attributes: Any = None, part_map: Any = None, n_parts: int | None = None,
             class_parts: Any = None, n_pairs: int = 25,
             max_contrastive_features: int = 1000) -> Report:
    """Measure a Classifier (or its head: ``nn.Linear`` or ``SparseLayer``) on test features.

    ``class_attributes`` (C × A) gives structural grounding; ``part_map`` (N × H × W, 0 =
    background) with ``n_parts`` gives alignment, and ``class_parts`` (C × P) the share of a
    class's features on its own parts. Above ``max_contrastive_features`` features read by the
    head, contrastiveness is not computed (None) rather than estimated.
    """
    head = getattr(model, "head", model)
    pooled, labels, maps = features.pooled.float(), features.labels, features.maps
    with torch.no_grad():
        predicted = head(pooled).argmax(1)
        if hasattr(head, "select_maps"):
            used, weight = head.normalize(pooled), head.weight
            maps = None if maps is None else head.select_maps(maps)
        else:
            used, weight = pooled, head.weight.detach()
    n_classes = weight.shape[0]
    comp = compactness(weight)
    diversity = sid = None
    if maps is not None:
        diversity = _optional(diversity_at_k, maps.float(), weight.float(), predicted, k=k)
        sid = _optional(diversity_at_k, maps.float(), weight.float(), predicted, k=k,
                        scale_invariant=True)
    grounding = None if class_attributes is None else structural_grounding(
        weight, class_attributes, n_pairs=n_pairs)
    align = lift = own = own_chance = None
    if part_map is not None and maps is not None:
        if len(part_map) != len(pooled):
            raise ValueError(f"part_map has {len(part_map)} images but the features {len(pooled)}: "
                             "pass the part maps of exactly the images the features belong to.")
        parts = part_alignment(maps.float().clamp_min(0), torch.as_tensor(part_map), int(n_parts))
        align = parts.mean_score
        lift = float((parts.score / parts.chance[parts.best_part]).mean())
        if class_parts is not None:
            truth = torch.as_tensor(class_parts).bool()
            own = float(torch.stack([truth[c, parts.best_part[weight[c] != 0]].float().mean()
                                     for c in range(n_classes)]).mean())
            own_chance = float(truth.float().mean())
    return Report(
        name=name, accuracy=float((predicted == labels).float().mean()),
        features_used=comp.features_used, per_class=comp.per_class, k=int(k),
        diversity=diversity, sid=sid, dependence=dependence(used, weight, predicted),
        class_independence=class_independence(used, labels, n_classes),
        contrastiveness=None if used.shape[1] > max_contrastive_features
        else contrastiveness(used),
        structural_grounding=grounding, alignment=align, alignment_lift=lift, own_parts=own,
        own_parts_chance=own_chance)


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, checked on our numbers: holds when ``value ≥ threshold``.

    With a bootstrap ``interval`` (low, high) the verdict is "holds" only when the whole interval
    clears the threshold, "fails" when it lies below, and "within noise" when it straddles it.
    """

    statement: str
    value: float | None
    threshold: float
    reason: str  # why this threshold
    interval: tuple[float, float] | None = None

    @property
    def holds(self) -> bool | None:
        """True / False, or None where the number could not be computed or is within noise."""
        if self.value is None:
            return None
        if self.interval is None:
            return bool(self.value >= self.threshold)
        low, high = self.interval
        return True if low >= self.threshold else False if high < self.threshold else None

    @property
    def within_noise(self) -> bool:
        """The interval straddles the threshold: the sample cannot tell."""
        return self.value is not None and self.interval is not None and self.holds is None

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not computed"
        return {True: "holds", False: "fails", None: "within noise"}[self.holds]

    @property
    def shown(self) -> str:
        """The value, with its (95 %) interval in brackets where there is one."""
        if self.interval is None:
            return _cell(self.value)
        return f"{_cell(self.value)} [{_cell(self.interval[0])}, {_cell(self.interval[1])}]"


class ClaimsTable:
    """A chapter's claims with their verdicts, as an HTML table in Jupyter."""

    def __init__(self, claims: Mapping[str, Claim]):
        self.claims = dict(claims)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{c.verdict}</td><td style='text-align:left'>{html.escape(c.statement)}"
            f"</td><td>{c.shown}</td><td>≥ {c.threshold:g}</td>"
            f"<td style='text-align:left'>{html.escape(c.reason)}</td></tr>"
            for c in self.claims.values())
        return ("<table><thead><tr><th>verdict</th><th>claim</th><th>ours</th>"
                "<th>threshold</th><th>why this threshold</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")

    def __repr__(self) -> str:
        return "\n".join(f"{c.verdict:>12s}: {c.statement}\n{'':14s}{c.shown}, threshold "
                         f"{c.threshold:g}" for c in self.claims.values())


def glue_numbers(**values: Any) -> None:
    """Hand numbers (already formatted) to the page's prose through myst-nb's ``glue``.

    A no-op where myst-nb is not installed (Colab): the printed outputs carry the numbers there.
    """
    try:
        from myst_nb import glue
    except ImportError:
        return
    for name, value in values.items():
        glue(name, value, display=False)
