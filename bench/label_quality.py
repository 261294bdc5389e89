"""How close each consensus method comes to the truth, on simulated raters: prints ONE JSON line of figures.

    python bench/label_quality.py                     # defaults below (about a minute on 2 CPU cores)
    python bench/label_quality.py --seeds 3 --images 200

Per seed and scenario: `--images` images with a true score per dimension (12 dimensions, from
model_core.standard), rated by `redundancy` of `--raters` raters each (an incomplete design, as campaigns are).
A good rater gives truth + bias + noise, with a bias drawn per rater (N(0, 0.07)) and moved a little per dimension
(N(0, 0.02)), and a noise level per rater (uniform 0.03-0.12). A share `bad` of the raters is bad, half of them
spammers (uniform random scores) and half narrow-range raters (0.5 + 0.25 * (truth - 0.5) + noise: they squeeze
everything towards the middle). Scores are clipped to [0, 1].

Scenarios: bad share 0 and `--bad` (default 0.2), and "identical" (every rater unbiased with the same noise,
0.08: the plain mean's best case), each at redundancy 3 and 5. For each method of
aesplatform.annotation.consensus: RMSE and PLCC of the image scores against the truth (over all images and the
12 dimensions), and the recovery of the good raters' parameters: RMSE of the estimated bias against the true
bias, and the Spearman correlation of the estimated inconsistency with the true noise level. Each figure is the
mean and the standard deviation over `--seeds` seeds. `ratio_to_mean` is a method's RMSE over the plain mean's,
per seed, then averaged; `target` checks the issue's target for the default method. "sureal_p910" is
sureal's P910AnnexEModel as published, for reference (the platform's p910_mle corrects it; see
aesplatform.annotation.consensus.subject_model).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_core.standard import NUM_DIMENSIONS  # noqa: E402


def _consensus_module():
    # aesplatform.annotation.consensus is pure numpy/scipy/sureal: loaded without Django
    spec = importlib.util.spec_from_file_location(
        "consensus", ROOT / "platform" / "aesplatform" / "annotation" / "consensus.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["consensus"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SUREAL = "sureal_p910"  # reference: sureal's P910AnnexEModel as published, on every rater (not a platform method)


def simulate(rng: np.random.Generator, *, images: int, raters: int, redundancy: int, bad: float,
             identical: bool = False) -> dict:
    """Truth (images, dims), ratings (dims, images, raters) with NaN, and the raters' true parameters.
    `identical`: every rater unbiased with the same noise (0.08), the case the plain mean is made for."""
    truth = np.clip(rng.normal(0.55, 0.16, size=(images, NUM_DIMENSIONS)), 0.05, 0.95)
    n_bad = int(round(bad * raters))
    kind = np.array(["good"] * raters, dtype=object)
    bad_idx = rng.choice(raters, n_bad, replace=False)
    kind[bad_idx[: n_bad // 2]] = "spammer"
    kind[bad_idx[n_bad // 2:]] = "narrow"
    bias = rng.normal(0.0, 0.07, size=raters)[:, None] + rng.normal(0.0, 0.02, size=(raters, NUM_DIMENSIONS))
    noise = rng.uniform(0.03, 0.12, size=raters)
    if identical:
        bias, noise = np.zeros_like(bias), np.full(raters, 0.08)
    ratings = np.full((NUM_DIMENSIONS, images, raters), np.nan)
    for i in range(images):
        who = rng.choice(raters, redundancy, replace=False)
        for j in who:
            if kind[j] == "spammer":
                x = rng.uniform(0.0, 1.0, size=NUM_DIMENSIONS)
            elif kind[j] == "narrow":
                x = 0.5 + 0.25 * (truth[i] - 0.5) + 0.03 * rng.normal(size=NUM_DIMENSIONS)
            else:
                x = truth[i] + bias[j] + noise[j] * rng.normal(size=NUM_DIMENSIONS)
            ratings[:, i, j] = np.clip(x, 0.0, 1.0)
    return {"truth": truth, "ratings": ratings, "bias": bias, "noise": noise, "good": kind == "good"}


def measure(consensus, data: dict, method: str) -> dict:
    truth, ratings, good = data["truth"], data["ratings"], data["good"]
    scores = np.full(truth.shape, np.nan)
    bias_err, inc_rho = [], []
    for d in range(NUM_DIMENSIONS):
        if method == SUREAL:
            fit = consensus.sureal_subject_model(ratings[d])
            scores[:, d] = np.clip(fit["quality_scores"], 0.0, 1.0)
            bias, inconsistency = np.array(fit["observer_bias"]), np.array(fit["observer_inconsistency"])
        else:
            result = consensus.consensus(ratings[d], method)
            scores[:, d] = result.mos
            bias, inconsistency = result.raters.bias, result.raters.inconsistency
        # the model's biases are relative to the raters' mean (a zero mean is forced): compare centred biases
        est, true = bias[good], data["bias"][good, d]
        ok = np.isfinite(est)
        if ok.sum() >= 2:
            bias_err.append(np.sqrt(np.mean(((est[ok] - est[ok].mean()) - (true[ok] - true[ok].mean())) ** 2)))
        inc, true_noise = inconsistency[good], data["noise"][good]
        ok = np.isfinite(inc)
        if ok.sum() >= 3 and np.ptp(true_noise[ok]) > 0:  # identical raters: nothing to rank
            inc_rho.append(stats.spearmanr(inc[ok], true_noise[ok]).statistic)
    rated = np.isfinite(scores)
    err = scores[rated] - truth[rated]
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "plcc": float(np.mean([stats.pearsonr(scores[:, d], truth[:, d]).statistic for d in range(NUM_DIMENSIONS)])),
        "bias_rmse": float(np.mean(bias_err)) if bias_err else None,
        "inconsistency_spearman": float(np.mean(inc_rho)) if inc_rho else None,
    }


def _spread(values: list) -> dict:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "std": None}
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if v.size > 1 else 0.0, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--raters", type=int, default=30)
    parser.add_argument("--bad", type=float, default=0.2, help="share of bad raters in the second scenario")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    consensus = _consensus_module()
    started = time.perf_counter()
    scenarios = {}
    methods = (*consensus.METHODS, SUREAL)
    seconds = {m: 0.0 for m in methods}
    for bad, identical in ((0.0, False), (args.bad, False), (0.0, True)):
        for redundancy in (3, 5):
            per_method = {m: [] for m in methods}
            for seed in range(args.seeds):
                data = simulate(np.random.default_rng(1000 * seed + redundancy), images=args.images,
                                raters=args.raters, redundancy=redundancy, bad=bad, identical=identical)
                for method in methods:
                    t0 = time.perf_counter()
                    per_method[method].append(measure(consensus, data, method))
                    seconds[method] += time.perf_counter() - t0
            mean_rmse = [f["rmse"] for f in per_method[consensus.MEAN]]
            name = "identical" if identical else f"bad{int(round(bad * 100))}"
            scenarios[f"{name}_r{redundancy}"] = {
                method: {
                    **{k: _spread([f[k] for f in figures]) for k in figures[0]},
                    "ratio_to_mean": _spread([f["rmse"] / m for f, m in zip(figures, mean_rmse)]),
                }
                for method, figures in per_method.items()
            }
    default = consensus.DEFAULT_METHOD
    bad_key = f"bad{int(round(args.bad * 100))}_r3"
    target = {
        "method": default,
        "ratio_bad_r3": scenarios[bad_key][default]["ratio_to_mean"]["mean"],
        "ratio_bad_r3_ok": scenarios[bad_key][default]["ratio_to_mean"]["mean"] <= 0.8,
        "never_worse_when_good": all(
            scenarios[f"bad0_r{r}"][default]["rmse"]["mean"] <= scenarios[f"bad0_r{r}"][consensus.MEAN]["rmse"]["mean"]
            for r in (3, 5)
        ),
        # identical raters, the plain mean's best case: how much the default gives away there
        "ratio_identical_r3": scenarios["identical_r3"][default]["ratio_to_mean"]["mean"],
        "ratio_identical_r5": scenarios["identical_r5"][default]["ratio_to_mean"]["mean"],
    }
    figures = {
        "bench": "label_quality", "images": args.images, "raters": args.raters, "dimensions": NUM_DIMENSIONS,
        "seeds": args.seeds, "bad_share": args.bad, "scenarios": scenarios, "target": target,
        "seconds_per_method": {m: round(s, 2) for m, s in seconds.items()},
        "wall_s": round(time.perf_counter() - started, 1), "machine": f"{platform.machine()}, CPU",
    }
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
