"""Thresholds turn signals into a proposal: keep or reject, the reasons, and how uncertain the call is.

Pure functions over plain dicts, so proposals are recomputed live when a curator edits a threshold, without
running the model again. Each check yields a signed margin in [-1, 1] (positive: passes; 1: far from the
threshold); an image is rejected when any check fails. Uncertainty is 1 - |the deciding margin|: for a keep the
smallest passing margin, for a reject the most decisive failure. The review page sorts by it.

CLIP signals of a model with random weights (no checkpoint) are noise: `clip_trusted=False` leaves them out of the
decision (they are listed, marked unused), so such a run proposes only from the measured pixel signals.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from aesplatform.common.text import name_list

KEEP = "keep"
REJECT = "reject"

DEFAULT_THRESHOLDS: dict[str, Any] = {
    "min_short_side": 256,
    "max_aspect_ratio": 3.0,
    "min_blur_variance": 40.0,
    "max_underexposed_fraction": 0.5,
    "max_overexposed_fraction": 0.5,
    "min_faces": 1,
    "max_faces": 1,
    "min_largest_face_fraction": 0.002,
    "near_duplicate_cosine": 0.95,
    "clip": {
        "person_subject": {"min": 0.5},
        "single_person": {"min": 0.5},
        "photograph": {"min": 0.5},
        "quality_problems": {"max": 0.5},
    },
}

# name -> (type, lower bound, upper bound, description)
_SCALARS: dict[str, tuple[type, float, float, str]] = {
    "min_short_side": (int, 1, 100_000, "shortest side in pixels"),
    "max_aspect_ratio": (float, 1.0, 100.0, "longest side / shortest side"),
    "min_blur_variance": (float, 0.0, 1e7, "variance of the Laplacian"),
    "max_underexposed_fraction": (float, 0.0, 1.0, "fraction of near-black pixels"),
    "max_overexposed_fraction": (float, 0.0, 1.0, "fraction of near-white pixels"),
    "min_faces": (int, 0, 1000, "detected faces"),
    "max_faces": (int, 0, 1000, "detected faces"),
    "min_largest_face_fraction": (float, 0.0, 1.0, "largest face area / image area"),
    "near_duplicate_cosine": (float, 0.5, 1.0, "CLIP embedding cosine similarity"),
}


RANDOM_WEIGHTS_NOTE = "CLIP signals not used: the model has random weights (no checkpoint)"


class ThresholdError(ValueError):
    """The thresholds are malformed; the message says which one and why."""


def default_thresholds() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_THRESHOLDS)


def thresholds_validate(thresholds: Any, *, groups: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge `thresholds` over `base` (default: the defaults) and validate; raise ThresholdError."""
    if not isinstance(thresholds, dict):
        raise ThresholdError("Thresholds must be an object.")
    merged = copy.deepcopy(base) if base is not None else default_thresholds()
    unknown = set(thresholds) - set(_SCALARS) - {"clip"}
    if unknown:
        raise ThresholdError(f"Unknown threshold(s): {name_list(sorted(unknown))}.")
    for name, value in thresholds.items():
        if name == "clip":
            continue
        kind, low, high, what = _SCALARS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ThresholdError(f"{name} must be a number ({what}).")
        if kind is int and value != int(value):
            raise ThresholdError(f"{name} must be a whole number ({what}).")
        if not low <= value <= high:
            raise ThresholdError(f"{name} must be between {low:g} and {high:g} ({what}), not {value}.")
        merged[name] = kind(value)
    clip = thresholds.get("clip")
    if clip is not None:
        if not isinstance(clip, dict):
            raise ThresholdError("clip must be an object: prompt group -> {'min': p} or {'max': p}.")
        merged_clip = dict(merged.get("clip", {}))
        for group, rule in clip.items():
            if group not in groups:
                raise ThresholdError(f"clip.{group}: no prompt group of that name (groups: {', '.join(groups)}).")
            if rule is None:  # null removes the rule
                merged_clip.pop(group, None)
                continue
            if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in ("min", "max"):
                raise ThresholdError(f"clip.{group} must be {{'min': p}} or {{'max': p}}.")
            (direction, value), = rule.items()
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ThresholdError(f"clip.{group}.{direction} must be a probability between 0 and 1.")
            merged_clip[group] = {direction: float(value)}
        merged["clip"] = merged_clip
    merged["clip"] = {g: r for g, r in merged.get("clip", {}).items() if g in groups}
    if merged["min_faces"] > merged["max_faces"]:
        raise ThresholdError("min_faces must not be above max_faces.")
    return merged


@dataclass(frozen=True)
class Proposal:
    decision: str
    reasons: list[str]
    uncertainty: float


def _clip_unit(x: float) -> float:
    return max(-1.0, min(1.0, x))


def _ratio_margin(value: float, threshold: float, *, factor: float) -> float:
    """Margin of value >= threshold on a log scale: `factor` times away counts as certain."""
    if threshold <= 0:
        return 1.0
    if value <= 0:
        return -1.0
    return _clip_unit(math.log(value / threshold) / math.log(factor))


def _min_probability_margin(p: float, t: float) -> float:
    if p >= t:
        return 1.0 if t >= 1 else (p - t) / (1 - t)
    return (p - t) / t if t > 0 else -1.0


def proposal_compute(
    signals: dict[str, Any], thresholds: dict[str, Any], *, group_labels: dict[str, str] | None = None,
    clip_trusted: bool = True,
) -> Proposal:
    """Propose keep/reject for one image.

    `signals`: width, height, face_count, largest_face_fraction, blur_variance, exposure {under, over},
    clip {group: probability}, and optionally error (could not be scored), duplicate_of (image id of the kept
    member of its near-duplicate group) and exact_duplicate.
    """
    if signals.get("error"):
        return Proposal(REJECT, [f"could not be scored: {signals['error']}"], 0.0)
    checks: list[tuple[float, str]] = []  # (margin, reason)
    width, height = signals["width"], signals["height"]
    short, long_ = min(width, height), max(width, height)
    t = thresholds
    checks.append((_ratio_margin(short, t["min_short_side"], factor=2.0),
                   f"shortest side {short} px (min {t['min_short_side']})"))
    checks.append((_ratio_margin(t["max_aspect_ratio"], long_ / short, factor=2.0),
                   f"aspect ratio {long_ / short:.2f} (max {t['max_aspect_ratio']:g})"))
    blur = signals.get("blur_variance")
    if blur is not None:
        checks.append((_ratio_margin(blur, t["min_blur_variance"], factor=4.0),
                       f"sharpness (Laplacian variance) {blur:.0f} (min {t['min_blur_variance']:g})"))
    exposure = signals.get("exposure") or {}
    for key, name, label in (("under", "max_underexposed_fraction", "underexposed"),
                             ("over", "max_overexposed_fraction", "overexposed")):
        if key in exposure:
            value, limit = exposure[key], t[name]
            margin = _clip_unit((limit - value) / 0.25)
            checks.append((margin, f"{label} pixels {value:.0%} (max {limit:.0%})"))
    faces = signals.get("face_count")
    if faces is not None:
        low, high = t["min_faces"], t["max_faces"]
        ok = low <= faces <= high
        wanted = f"{low}" if low == high else f"{low}–{high}"
        checks.append((1.0 if ok else -0.6, f"{faces} face{'s' if faces != 1 else ''} detected (wanted {wanted})"))
        fraction = signals.get("largest_face_fraction")
        if faces > 0 and fraction is not None and t["min_largest_face_fraction"] > 0:
            checks.append((_ratio_margin(fraction, t["min_largest_face_fraction"], factor=4.0),
                           f"largest face {fraction:.2%} of the image (min {t['min_largest_face_fraction']:.2%})"))
    probabilities = signals.get("clip") if clip_trusted else None
    probabilities = probabilities or {}
    labels = group_labels or {}
    for group, rule in t.get("clip", {}).items():
        if group not in probabilities:
            continue
        p = probabilities[group]
        label = labels.get(group, group.replace("_", " "))
        if "min" in rule:
            margin = _min_probability_margin(p, rule["min"])
            checks.append((margin, f"CLIP '{label}' {p:.2f} (min {rule['min']:.2f})"))
        else:
            margin = -_min_probability_margin(p, rule["max"]) if p != rule["max"] else 0.0
            checks.append((margin, f"CLIP '{label}' {p:.2f} (max {rule['max']:.2f})"))
    duplicate_of = signals.get("duplicate_of")
    if duplicate_of is not None:
        kind = "exact duplicate" if signals.get("exact_duplicate") else "near duplicate"
        checks.append(
            (-1.0 if signals.get("exact_duplicate") else -0.8, f"{kind} of image {duplicate_of} (that one is kept)")
        )

    note = [] if clip_trusted or not signals.get("clip") else [RANDOM_WEIGHTS_NOTE]
    failing = [(m, r) for m, r in checks if m < 0]
    if failing:
        failing.sort(key=lambda c: c[0])
        return Proposal(REJECT, [r for _, r in failing] + note, round(1.0 - min(1.0, -failing[0][0]), 6))
    if not checks:
        return Proposal(KEEP, ["no check applies", *note], 1.0)
    margin, reason = min(checks, key=lambda c: c[0])
    return Proposal(KEEP, ["passes every check", f"closest to a threshold: {reason}", *note], round(1.0 - margin, 6))
