"""Active learning against random order and a diversity-only baseline, over several seeds: ONE JSON line.

    python bench/active_learning.py                                   # 5 seeds, defaults below
    python bench/active_learning.py --seeds 0 1 2 --target 0.85 --steps 80

Three strategies grow the same random seed set by `--step` labels a round; an oracle annotator gives the exact
synthetic scores (expert: all 12 dimensions):
- `random`: the next images in a random order;
- `diversity`: no model needed, no uncertainty: greedy k-centre (farthest first) over the image embeddings, each
  next image the one farthest from everything labelled so far (the "core-set" baseline of Sener & Savarese 2018);
- `active`: the platform's own order (aesplatform.modeling.active: head disagreement + MetaVoter uncertainty,
  with its diversity term) from the model trained on the labels so far.
Each round trains the tiny model from scratch for a fixed number of steps on the labels so far, measures the
MetaVoter PLCC on a held-out test set (images no strategy can pick), and stops when `--target` is reached or at
`--max-labels`. Per seed the figure is the number of labels each strategy needs; over seeds, the label saving
of `active` (1 - active / random) and of `diversity`, each as mean, standard deviation, min and max over the
seeds where both reached the target, plus the area under each learning curve (mean PLCC over the shared label
budgets), which counts the seeds where a strategy did not reach the target too. A seed changes the pool and test
images, the initial set, the random order and the training seed.

Embeddings: the platform uses curation's CLIP embeddings; here, without CLIP weights, each image's 8x8 RGB
thumbnail (mean-centred, L2-normalised) stands in for it, for `diversity` and `active` alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "platform"))

from model_core.evaluation import evaluate  # noqa: E402
from model_core.model import ModelConfig, load_model  # noqa: E402
from model_core.scoring import score_images  # noqa: E402
from model_core.synthetic import write_humanbeauty  # noqa: E402
from model_core.training import TrainConfig, train  # noqa: E402

STRATEGIES = ("random", "diversity", "active")


def _order_module():
    # aesplatform.modeling.active's pure functions (no Django needed for them)
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "active", ROOT / "platform" / "aesplatform" / "modeling" / "active.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _embeddings(records: list[dict]) -> np.ndarray:
    from PIL import Image

    vectors = []
    for record in records:
        with Image.open(record["images"][0]) as image:
            v = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32).ravel()
        v = v - v.mean()
        vectors.append(v / max(float(np.linalg.norm(v)), 1e-6))
    return np.stack(vectors)  # (N, 192)


def farthest_first(embeddings: np.ndarray, labelled: list[int], candidates: list[int], count: int) -> list[int]:
    """Greedy k-centre: `count` candidates, each the farthest (cosine) from the labelled ones and those picked."""
    cand = np.asarray(candidates)
    # (C,) cosine distance of each candidate to its nearest labelled image
    nearest = (1.0 - embeddings[cand] @ embeddings[labelled].T).min(axis=1)
    picks: list[int] = []
    for _ in range(min(count, len(cand))):
        best = int(np.argmax(nearest))
        picks.append(int(cand[best]))
        nearest = np.minimum(nearest, 1.0 - embeddings[cand] @ embeddings[cand[best]])
        nearest[best] = -np.inf
    return picks


def _train_and_test(labelled: list[dict], test_jsonl: Path, work: Path, args, seed: int) -> tuple[float, object]:
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in labelled))
    config = TrainConfig(
        data=str(data), output_dir=str(work / "run"), model=ModelConfig(train_vision=True, head_dropout=0.0),
        max_tiles=1, max_steps=args.steps, batch_size=16, lr=5e-4, head_lr=2e-3, warmup_steps=10, num_workers=0,
        checkpoint_every=0, log_every=50, device="cpu", precision="fp32", metavoter_fraction=0.1, seed=seed,
        resume=False,
    )
    result = train(config)
    model = load_model(result.final_checkpoint)
    report = evaluate(model, test_jsonl, max_tiles=1, plots=False)
    return float(report.overall["metavoter"]["plcc"]), model


def run_strategy(name: str, pool: list[dict], embeddings: np.ndarray, test_jsonl: Path, args, active,
                 seed: int) -> dict:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    labelled_idx = [int(i) for i in order[: args.initial]]
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            plcc, model = _train_and_test([pool[i] for i in labelled_idx], test_jsonl, Path(tmp), args, seed)
            curve.append([len(labelled_idx), round(plcc, 4)])
            logging.info("seed %d %s: %d labels -> PLCC %.3f", seed, name, len(labelled_idx), plcc)
            if plcc >= args.target or len(labelled_idx) >= min(args.max_labels, len(pool)):
                break
            taken = set(labelled_idx)
            rest = [i for i in range(len(pool)) if i not in taken]
            if name == "random":
                picks = [int(i) for i in order if int(i) not in taken][: args.step]
            elif name == "diversity":
                picks = farthest_first(embeddings, labelled_idx, rest, args.step)
            else:
                scores = score_images(model, [pool[i]["images"][0] for i in rest], max_tiles=1, batch_size=64)
                estimates = np.array([[s.lm_score, s.regression_score, s.expert_scores[-1]] for s in scores])
                info = active.informativeness(estimates, np.array([s.uncertainty for s in scores]))
                ranked = active.order_by_informativeness(info, embeddings[rest])
                picks = [rest[j] for j in ranked[: args.step]]
            labelled_idx.extend(picks)
    reached = curve[-1][1] >= args.target
    return {"labels_needed": curve[-1][0] if reached else None, "reached": reached, "curve": curve}


def curve_area(curve: list[list[float]], budgets: list[int]) -> float:
    """Mean PLCC over `budgets`; a strategy that stopped early (target reached) keeps its last PLCC."""
    values = []
    for budget in budgets:
        at_or_below = [plcc for labels, plcc in curve if labels <= budget]
        values.append(at_or_below[-1] if at_or_below else curve[0][1])
    return float(np.mean(values))


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"mean": round(statistics.fmean(values), 3),
            "std": round(statistics.stdev(values), 3) if len(values) > 1 else None,
            "min": round(min(values), 3), "max": round(max(values), 3), "n": len(values)}


def summarise(per_seed: dict[int, dict], args) -> dict:
    budgets = list(range(args.initial, args.max_labels + 1, args.step))
    summary = {}
    for name in ("diversity", "active"):
        savings = [1.0 - runs[name]["labels_needed"] / runs["random"]["labels_needed"]
                   for runs in per_seed.values()
                   if runs[name]["labels_needed"] and runs["random"]["labels_needed"]]
        summary[f"label_saving_{name}_vs_random"] = spread(savings)
    savings = [1.0 - runs["active"]["labels_needed"] / runs["diversity"]["labels_needed"]
               for runs in per_seed.values()
               if runs["active"]["labels_needed"] and runs["diversity"]["labels_needed"]]
    summary["label_saving_active_vs_diversity"] = spread(savings)
    for name in STRATEGIES:
        summary[f"reached_{name}"] = sum(runs[name]["reached"] for runs in per_seed.values())
        summary[f"curve_area_{name}"] = spread([curve_area(runs[name]["curve"], budgets)
                                                for runs in per_seed.values()])
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=400, help="unlabelled synthetic images to choose from")
    parser.add_argument("--test", type=int, default=120, help="held-out test images")
    parser.add_argument("--initial", type=int, default=20, help="random seed set (every strategy)")
    parser.add_argument("--step", type=int, default=20, help="labels added per round")
    parser.add_argument("--target", type=float, default=0.9, help="target held-out MetaVoter PLCC")
    parser.add_argument("--max-labels", type=int, default=320)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per training round")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = parser.parse_args()
    if "random" not in args.strategies:
        parser.error("the savings are measured against `random`: keep it in --strategies")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for noisy in ("model_core", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    active = _order_module()
    started = time.monotonic()
    per_seed: dict[int, dict] = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            write_humanbeauty(Path(tmp) / "pool", n_overall=0, n_expert=args.pool, seed=1000 + seed,
                              size=(64, 64), test_fraction=0.0)
            write_humanbeauty(Path(tmp) / "test", n_overall=0, n_expert=args.test, seed=2000 + seed,
                              size=(64, 64), test_fraction=0.0)
            pool = _records(Path(tmp) / "pool" / "swift_train.jsonl")
            test_jsonl = Path(tmp) / "test" / "swift_train.jsonl"
            embeddings = _embeddings(pool)
            per_seed[seed] = {name: run_strategy(name, pool, embeddings, test_jsonl, args, active, seed)
                              for name in args.strategies}
    if set(args.strategies) != set(STRATEGIES):
        summary = {}
    else:
        summary = summarise(per_seed, args)
    figures = {
        "bench": "active_learning", "machine": f"{platform.machine()}, {_cpu_count()} CPU cores, CPU only",
        "target_plcc": args.target, "pool": args.pool, "test": args.test, "initial": args.initial,
        "step": args.step, "max_labels": args.max_labels, "steps_per_round": args.steps, "seeds": args.seeds,
        **summary, "per_seed": {str(seed): runs for seed, runs in per_seed.items()},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
