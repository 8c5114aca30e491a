"""Split-conformal prediction sets: CHiQPM's hierarchical score, the standard baselines, metrics.

The split-conformal recipe: score every calibration image's true class (low = conforming), take
the ⌈(n+1)(1−α)⌉-th smallest of the n scores as q̂, and predict ``{c : s_c(x) ≤ q̂}``. With
exchangeable calibration and test data the true class's score is at most q̂ with probability
≥ 1 − α. Tie rule: a class whose score *equals* q̂ is in the set (≤), which keeps the guarantee.
(torchcp 0.1.3, used by the official CHiQPM code, takes a linearly interpolated quantile at level
(n+1)(1−α)/n and keeps only scores strictly below it; we use the textbook rule.)

CHiQPM's score (paper eqs. 10–13) lives on the hierarchy of :mod:`companion.metrics.hierarchy`:
a class off the predicted class's path at level L scores +∞ (never in the set unless q̂ = +∞),
a class on it scores minus the activations along its path from step L+1 to its divergence point.
The level L is the deepest one whose calibration accuracy (true class on the predicted path) is
still ≥ 1 − α; ``calibrate`` stores the scores of every level, so α changes without recalibrating.

Public API
----------
``conformal_quantile(scores, alpha)``, ``hierarchical_scores(hierarchy)``,
``HierarchicalConformal(weight)`` (``calibrate``, ``level``, ``quantile``, ``predict_sets``),
``baseline_sets(probs_cal, y_cal, probs_test, method, alphas)`` (LAC, APS, RAPS via MAPIE),
``coverage``, ``average_size``, ``set_coherence``, ``stratified_splits``.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..batches import to_numpy
from .hierarchy import Hierarchy, decision_hierarchy, shared_depth

__all__ = ["BASELINES", "ConformalTable", "HierarchicalConformal", "average_size", "baseline_sets",
           "check_alpha", "check_calibration", "compare_methods", "conformal_quantile", "coverage",
           "hierarchical_scores", "set_coherence", "stratified_splits"]

BASELINES = {"LAC": "lac", "APS": "aps", "RAPS": "raps"}  # our names → MAPIE's
RAPS_TUNING = 0.2  # MAPIE's RAPS: the share of calibration images that tunes k* and λ


def check_alpha(alpha: float, n: int | None = None) -> float:
    """α as a float in (0, 1); with ``n`` calibration scores, also n ≥ 1/α − 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) \
            or not 0 < float(alpha) < 1:
        raise ValueError(f"alpha (the miscoverage rate) must lie strictly between 0 and 1; got "
                         f"{alpha!r}. For 90 % coverage pass alpha=0.1.")
    alpha = float(alpha)
    if n is not None and math.ceil((n + 1) * (1 - alpha) - 1e-9) > n:
        raise ValueError(f"{n} calibration images are too few for alpha={alpha}: split conformal "
                         f"needs n ≥ 1/alpha − 1 = {1 / alpha - 1:.0f}. Calibrate on more images "
                         "or raise alpha.")
    return alpha


def conformal_quantile(scores, alpha: float) -> float:
    """q̂: the ⌈(n+1)(1−α)⌉-th smallest of the n calibration scores (the textbook rule)."""
    s = np.sort(to_numpy(scores, float).reshape(-1))
    if len(s) == 0:
        raise ValueError("conformal_quantile needs at least one calibration score.")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} calibration scores are NaN; check the model's "
                         "outputs (features or probabilities) for NaN before calibrating.")
    alpha = check_alpha(alpha, len(s))
    rank = math.ceil((len(s) + 1) * (1 - alpha) - 1e-9)  # the tolerance absorbs float error
    return float(s[rank - 1])


def check_calibration(labels, n_classes: int) -> np.ndarray:
    """Calibration labels as ints, with every one of the ``n_classes`` classes present."""
    y = to_numpy(labels, int).reshape(-1)
    if len(y) == 0 or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"calibration labels must lie in 0..{n_classes - 1}; got "
                         f"{'none' if len(y) == 0 else f'{y.min()}..{y.max()}'}.")
    missing = np.setdiff1d(np.arange(n_classes), y)
    if len(missing):
        raise ValueError(f"classes {missing[:10].tolist()} are absent from the calibration set; "
                         "draw it from every class (see stratified_splits).")
    return y


def hierarchical_scores(h: Hierarchy) -> np.ndarray:
    """(k + 1, B, C): CHiQPM's non-conformity score of every class at every level L = 0..k."""
    k = h.per_class
    steps = np.arange(k)[None, None, :]  # step t (0-based) = level t + 1
    out = np.empty((k + 1, len(h), h.n_classes))
    for L in range(k + 1):
        on_path = h.depth >= L
        span = (steps >= L) & (steps <= h.depth[:, :, None])  # steps L+1 .. i_div
        out[L] = np.where(on_path, 0.0 - (h.values * span).sum(2), np.inf)
    return out


class HierarchicalConformal:
    """CHiQPM's built-in conformal predictor for a binary W (k features per class).

    ``calibrate(features, labels)`` stores, for every level, the true class's scores and the
    level's accuracy; ``predict_sets(features, alpha)`` then chooses the level and q̂ for any α.
    ``features`` are the head's normalised, ReLU'd features, or a :class:`Hierarchy` already
    computed from them (``explain``).
    """

    def __init__(self, weight=None):
        self.weight = None if weight is None else to_numpy(weight, float)

    def explain(self, features, logits=None) -> Hierarchy:
        """The decision hierarchy of every image (see :func:`decision_hierarchy`)."""
        if self.weight is None:
            raise ValueError("HierarchicalConformal() without W takes only Hierarchy objects; pass "
                             "weight=W to explain features.")
        return decision_hierarchy(features, self.weight, logits)

    def _hierarchy(self, features) -> Hierarchy:
        return features if isinstance(features, Hierarchy) else self.explain(features)

    def calibrate(self, features, labels) -> HierarchicalConformal:
        h = self._hierarchy(features)
        y = check_calibration(labels, h.n_classes)
        if len(y) != len(h):
            raise ValueError(f"need one label per calibration image: {len(h)} images, "
                             f"{len(y)} labels.")
        rows = np.arange(len(y))
        depth_true = h.depth[rows, y]
        self.level_accuracy_ = np.array([(depth_true >= L).mean() for L in range(h.per_class + 1)])
        self.scores_ = hierarchical_scores(h)[:, rows, y]  # (k + 1, n)
        return self

    def _calibrated(self) -> None:
        if not hasattr(self, "scores_"):
            raise RuntimeError("HierarchicalConformal is not calibrated: call calibrate(features, "
                               "labels) on held-out images first.")

    def level(self, alpha: float) -> int:
        """L: the number of leading levels whose calibration accuracy is ≥ 1 − α."""
        self._calibrated()
        alpha = check_alpha(alpha, self.scores_.shape[1])
        passing = self.level_accuracy_[1:] >= 1 - alpha
        return int(np.argmin(passing)) if not passing.all() else len(passing)

    def quantile(self, alpha: float) -> float:
        """q̂ of the chosen level's calibration scores."""
        return conformal_quantile(self.scores_[self.level(alpha)], alpha)

    def predict_sets(self, features, alpha: float) -> np.ndarray:
        """(B, C) boolean prediction sets at miscoverage ``alpha``."""
        h = self._hierarchy(features)
        L = self.level(alpha)
        return hierarchical_scores(h)[L] <= self.quantile(alpha)


class _Probabilities:
    """A fitted scikit-learn classifier whose input *is* its predicted probabilities."""

    _estimator_type = "classifier"

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.classes_ = np.arange(n_classes)

    def fit(self, X, y=None):
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=float)

    def predict(self, X):
        return np.asarray(X).argmax(1)

    def get_params(self, deep: bool = True) -> dict:
        return {"n_classes": self.n_classes}

    def __sklearn_is_fitted__(self) -> bool:
        return True


def _probabilities(p, name: str, n_classes: int | None = None) -> np.ndarray:
    p = to_numpy(p, float)
    if p.ndim != 2 or (n_classes is not None and p.shape[1] != n_classes):
        raise ValueError(f"{name} must be (images, classes) probabilities; got shape {p.shape}.")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contain NaN or infinite values; check the model's logits.")
    if (p < 0).any() or not np.allclose(p.sum(1), 1, atol=1e-4):
        raise ValueError(f"{name} must be probabilities (non-negative, rows summing to 1); apply "
                         "softmax to logits first.")
    return p


def baseline_sets(probs_cal, labels_cal, probs_test, method: str,
                  alphas: float | Sequence[float], seed: int = 0) -> np.ndarray:
    """(B, C, len(alphas)) boolean sets of a standard method, calibrated with MAPIE.

    ``method`` is ``"LAC"`` (THR: 1 − p_y), ``"APS"`` or ``"RAPS"``; APS and RAPS are the
    randomised versions of their papers (the last label enters at random, drawn with ``seed``),
    and RAPS tunes k* and λ on 20 % of the calibration images (MAPIE's default).
    """
    from mapie.classification import SplitConformalClassifier

    if method not in BASELINES:
        raise ValueError(f"Unknown method {method!r}: choose one of {', '.join(BASELINES)}.")
    alphas = [alphas] if np.isscalar(alphas) else list(alphas)
    pc = _probabilities(probs_cal, "calibration probabilities")
    pt = _probabilities(probs_test, "test probabilities", pc.shape[1])
    y = check_calibration(labels_cal, pc.shape[1])
    levels = [1 - check_alpha(a, len(y)) for a in alphas]
    tuning = math.floor(len(y) * RAPS_TUNING)
    if method == "RAPS" and tuning <= 1 / min(alphas):
        raise ValueError(f"RAPS tunes k* and λ on {RAPS_TUNING:.0%} of the calibration images: "
                         f"{tuning} of {len(y)}, and it needs more than 1/alpha = {1 / min(alphas):.0f}. "
                         "Calibrate on more images or raise alpha.")
    model = SplitConformalClassifier(_Probabilities(pc.shape[1]), confidence_level=levels,
                                     conformity_score=BASELINES[method], prefit=True,
                                     random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MAPIE's notes on small calibration sets
        model.conformalize(pc, y)
        params = None if method == "LAC" else {"include_last_label": "randomized"}
        return model.predict_set(pt, conformity_score_params=params)[1].astype(bool)


def coverage(sets, labels) -> float:
    """Share of images whose true class is in its set."""
    S, y = np.asarray(sets, bool), to_numpy(labels, int).reshape(-1)
    return float(S[np.arange(len(y)), y].mean())


def average_size(sets) -> float:
    """Mean number of classes per set."""
    return float(np.asarray(sets, bool).sum(1).mean())


def set_coherence(sets, h: Hierarchy) -> float:
    """Share of sets that are exactly one subtree of their image's hierarchy (empty: no)."""
    S = np.asarray(sets, bool)
    depth = shared_depth(h.paths, S.argmax(1))  # against the set's first class
    levels = np.arange(h.per_class + 1)[:, None, None]
    subtree = ((depth[None] >= levels) == S[None]).all(2).any(0)  # some node's leaves = S
    return float((subtree & S.any(1)).mean())


def stratified_splits(labels, cal_fraction: float, n_splits: int, seed: int = 0
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` random (calibration, test) index pairs, ``cal_fraction`` of every class each."""
    y = to_numpy(labels, int).reshape(-1)
    if not 0 < cal_fraction < 1:
        raise ValueError(f"cal_fraction must lie strictly between 0 and 1; got {cal_fraction}.")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n_splits)):
        cal = []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            cal.append(idx[:max(1, min(len(idx) - 1, round(cal_fraction * len(idx))))])
        cal = np.sort(np.concatenate(cal))
        out.append((cal, np.setdiff1d(np.arange(len(y)), cal)))
    return out


@dataclass(frozen=True)
class ConformalTable:
    """Coverage, set size and coherence per method and α, as mean and spread over splits.

    ``rows`` holds one dict per (method, alpha) with keys coverage, size, coherence (means),
    their ``_sd`` (standard deviation over splits) and level (CHiQPM's mean L, else NaN).
    """

    rows: tuple[dict, ...]

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    @property
    def alphas(self) -> list[float]:
        return sorted({r["alpha"] for r in self.rows})

    def get(self, method: str, alpha: float, key: str = "size") -> float:
        """One number: ``key`` of ``method`` at ``alpha``."""
        for r in self.rows:
            if r["method"] == method and np.isclose(r["alpha"], alpha):
                return float(r[key])
        raise KeyError(f"no row for method {method!r} at alpha={alpha}; methods "
                       f"{self.methods}, alphas {self.alphas}.")

    def column(self, key: str, method: str | None = None) -> np.ndarray:
        """``key`` over all rows (or one method's rows, in α order)."""
        rows = [r for r in self.rows if method is None or r["method"] == method]
        return np.array([r[key] for r in sorted(rows, key=lambda r: r["alpha"])], float)

    def __repr__(self) -> str:
        lines = [f"{'method':8s} {'alpha':>5s} {'coverage':>15s} {'size':>13s} {'coherence':>13s}"]
        for r in self.rows:
            lines.append(f"{r['method']:8s} {r['alpha']:5.2f} {r['coverage']:8.3f} ± "
                         f"{r['coverage_sd']:.3f} {r['size']:6.2f} ± {r['size_sd']:.2f} "
                         f"{r['coherence']:6.2f} ± {r['coherence_sd']:.2f}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='padding:0 10px'>α = {a:g}</th>" for a in self.alphas)
        body = ""
        for key, fmt in (("coverage", "{:.3f}"), ("size", "{:.2f}"), ("coherence", "{:.2f}")):
            for m in self.methods:
                cells = "".join(f"<td style='padding:0 10px'>{fmt.format(self.get(m, a, key))} ± "
                                f"{fmt.format(self.get(m, a, key + '_sd'))}</td>"
                                for a in self.alphas)
                body += f"<tr><td>{key}</td><td>{html.escape(m)}</td>{cells}</tr>"
        return (f"<table><thead><tr><th>metric</th><th>method</th>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


def compare_methods(h: Hierarchy, probs, labels, alphas: Sequence[float],
                    splits: Sequence[tuple[np.ndarray, np.ndarray]],
                    methods: Sequence[str] = ("LAC", "APS", "RAPS")) -> ConformalTable:
    """CHiQPM's sets against the baselines on the same images and splits.

    One row per method and α: mean and standard deviation over ``splits`` of coverage, average
    set size and set coherence, and (CHiQPM) the mean level L. ``h`` is the hierarchy of the
    images, ``probs`` their softmax probabilities (for the baselines), ``labels`` the truth.
    """
    y = to_numpy(labels, int).reshape(-1)
    cp = HierarchicalConformal()
    runs: dict[tuple[str, float], list] = {}
    for s, (cal, test) in enumerate(splits):
        cp.calibrate(h[cal], y[cal])
        for a in alphas:
            S = cp.predict_sets(h[test], a)
            runs.setdefault(("CHiQPM", a), []).append(
                (coverage(S, y[test]), average_size(S), set_coherence(S, h[test]), cp.level(a)))
        for m in methods:
            sets = baseline_sets(probs[cal], y[cal], probs[test], m, alphas, seed=s)
            for i, a in enumerate(alphas):
                S = sets[:, :, i]
                runs.setdefault((m, a), []).append(
                    (coverage(S, y[test]), average_size(S), set_coherence(S, h[test]), np.nan))
    rows = []
    for (m, a), v in runs.items():
        v = np.asarray(v, float)
        mean, sd = v.mean(0), v.std(0, ddof=1) if len(v) > 1 else np.zeros(4)
        rows.append({"method": m, "alpha": a, "coverage": mean[0], "coverage_sd": sd[0],
                     "size": mean[1], "size_sd": sd[1], "coherence": mean[2],
                     "coherence_sd": sd[2], "level": mean[3]})
    return ConformalTable(tuple(rows))
