"""Active learning vs random order on synthetic data with oracle annotators: prints ONE JSON line of figures.

    python bench/active_learning.py                      # defaults below (about 10 minutes on 2 CPU cores)
    python bench/active_learning.py --pool 300 --target 0.75

Both strategies start from the same random seed set and grow it by `--step` labels a round; an oracle annotator
gives the exact synthetic scores (expert: all 12 dimensions). Each round trains the tiny model from scratch for a
fixed number of steps on the labels so far, measures PLCC of the MetaVoter on a held-out test set, then
pre-scores the unlabelled pool; "active" picks the next images with the platform's own order
(aesplatform.modeling.active: head disagreement + MetaVoter uncertainty + diversity), "random" at random.
The figure is the number of labels each needs to reach `--target` PLCC, and their ratio (active / random).

Embeddings for the diversity term: the platform uses curation's CLIP embeddings; here, without CLIP weights, each
image's 8x8 RGB thumbnail (mean-centred, L2-normalised) stands in for it.
"""

from __future__ import annotations

import argparse
import json
import logging
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
    return np.stack(vectors)


def _train_and_test(labelled: list[dict], test_jsonl: Path, work: Path, args) -> tuple[float, object]:
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in labelled))
    config = TrainConfig(
        data=str(data), output_dir=str(work / "run"), model=ModelConfig(train_vision=True, head_dropout=0.0),
        max_tiles=1, max_steps=args.steps, batch_size=16, lr=5e-4, head_lr=2e-3, warmup_steps=10, num_workers=0,
        checkpoint_every=0, log_every=50, device="cpu", precision="fp32", metavoter_fraction=0.1, seed=args.seed,
        resume=False,
    )
    result = train(config)
    model = load_model(result.final_checkpoint)
    report = evaluate(model, test_jsonl, max_tiles=1, plots=False)
    return float(report.overall["metavoter"]["plcc"]), model


def run_strategy(name: str, pool: list[dict], embeddings: np.ndarray, test_jsonl: Path, args, active) -> dict:
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(pool))
    labelled_idx = list(order[: args.initial])
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            plcc, model = _train_and_test([pool[i] for i in labelled_idx], test_jsonl, Path(tmp), args)
            curve.append([len(labelled_idx), round(plcc, 4)])
            print(f"{name}: {len(labelled_idx)} labels -> PLCC {plcc:.3f}", file=sys.stderr, flush=True)
            if plcc >= args.target or len(labelled_idx) >= min(args.max_labels, len(pool)):
                break
            rest = [i for i in range(len(pool)) if i not in set(labelled_idx)]
            if name == "random":
                picks = [i for i in order if i not in set(labelled_idx)][: args.step]
            else:
                scores = score_images(model, [pool[i]["images"][0] for i in rest], max_tiles=1, batch_size=64)
                estimates = np.array([[s.lm_score, s.regression_score, s.expert_scores[-1]] for s in scores])
                info = active.informativeness(estimates, np.array([s.uncertainty for s in scores]))
                ranked = active.order_by_informativeness(info, embeddings[rest])
                picks = [rest[j] for j in ranked[: args.step]]
            labelled_idx.extend(picks)
    reached = curve[-1][1] >= args.target
    return {"labels_needed": curve[-1][0] if reached else None, "reached": reached, "curve": curve}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=400, help="unlabelled synthetic images to choose from")
    parser.add_argument("--test", type=int, default=120, help="held-out test images")
    parser.add_argument("--initial", type=int, default=20, help="random seed set (both strategies)")
    parser.add_argument("--step", type=int, default=20, help="labels added per round")
    parser.add_argument("--target", type=float, default=0.9, help="target held-out MetaVoter PLCC")
    parser.add_argument("--max-labels", type=int, default=400)
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps per training round")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    active = _order_module()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        write_humanbeauty(Path(tmp) / "pool", n_overall=0, n_expert=args.pool, seed=11, size=(64, 64),
                          test_fraction=0.0)
        write_humanbeauty(Path(tmp) / "test", n_overall=0, n_expert=args.test, seed=12, size=(64, 64),
                          test_fraction=0.0)
        pool = _records(Path(tmp) / "pool" / "swift_train.jsonl")
        test_jsonl = Path(tmp) / "test" / "swift_train.jsonl"
        embeddings = _embeddings(pool)
        results = {name: run_strategy(name, pool, embeddings, test_jsonl, args, active)
                   for name in ("random", "active")}
    a, r = results["active"]["labels_needed"], results["random"]["labels_needed"]
    figures = {
        "bench": "active_learning", "target_plcc": args.target, "pool": args.pool, "test": args.test,
        "initial": args.initial, "step": args.step, "steps_per_round": args.steps,
        "random": results["random"], "active": results["active"],
        "label_ratio_active_over_random": round(a / r, 3) if a and r else None,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
