"""``python -m model_core {train,evaluate,score,synth,bench,convert}``: the same functions the platform calls, JSON out.

Every command prints exactly one JSON document on stdout (logs go to stderr), so the output can be piped; under
torchrun only rank 0 of `train` prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger("model_core")


def _print(payload: Any) -> None:
    from model_core.evaluation import _json_safe

    print(json.dumps(_json_safe(payload), indent=2, default=str))


def _model_config(args: argparse.Namespace):
    from model_core.model import BackboneConfig, LoraSpec, ModelConfig, read_checkpoint_config
    from model_core.text import ChatFormat, default_recipe_for

    if args.model_config:
        return ModelConfig.from_dict(json.loads(Path(args.model_config).read_text()))
    if getattr(args, "init_checkpoint", None):  # the saved model's structure and layout (e.g. a converted checkpoint)
        config = ModelConfig.from_dict(read_checkpoint_config(args.init_checkpoint)["model"])
        if args.recipe and args.recipe != config.chat.recipe:
            raise ValueError(f"--recipe {args.recipe}: {args.init_checkpoint} was trained with the "
                             f"{config.chat.recipe!r} recipe, and a model keeps the layout it was trained with")
        return config
    tiny = args.backbone == "tiny"
    chat = ChatFormat(recipe=args.recipe or default_recipe_for("tiny" if tiny else "internvl-hf"))
    return ModelConfig(backbone=BackboneConfig(source=args.backbone), lora=LoraSpec(r=args.lora_r),
                       train_vision=tiny, head_dropout=0.0 if tiny else 0.1, chat=chat)


def cmd_train(args: argparse.Namespace) -> int:
    """Also one rank of a multi-process run (torchrun): only rank 0 prints the result and reports progress."""
    from model_core.launch import EXIT_STOPPED, die_with_parent, progress_to_event, write_event
    from model_core.training import TrainConfig, TrainingStopped, train

    if args.die_with_parent:
        die_with_parent()
    rank = int(os.environ.get("RANK", "0"))
    if args.config:
        config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    else:
        if not args.data or not args.output:
            raise SystemExit("train: --data and --output are required without --config")
        config = TrainConfig(
            data=args.data, output_dir=args.output, model=_model_config(args), max_tiles=args.max_tiles,
            epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
            lr=args.lr, head_lr=args.head_lr, precision=args.precision, device=args.device,
            checkpoint_every=args.checkpoint_every, num_workers=args.num_workers, seed=args.seed,
            on_bad_image=args.on_bad_image, resume=not args.no_resume, init_checkpoint=args.init_checkpoint,
            metavoter_fraction=args.metavoter_fraction, metavoter_folds=args.metavoter_folds,
        )
    events = args.progress_jsonl
    callback = (lambda p: write_event(events, "progress", **progress_to_event(p))) if events else None
    stop_file = Path(args.stop_file) if args.stop_file else None
    should_stop = stop_file.exists if stop_file is not None else None
    try:
        result = train(config, show_progress=not args.quiet, progress_callback=callback, should_stop=should_stop)
    except TrainingStopped as exc:
        logger.warning("%s", exc)
        if rank == 0:
            if events:
                write_event(events, "stopped", message=str(exc))
            _print({"stopped": str(exc)})
        _barrier()  # no rank ends (which makes torchrun end the others) before rank 0 has reported
        return EXIT_STOPPED
    except Exception as exc:
        if events:
            write_event(events, "error", rank=rank, error=type(exc).__name__, message=str(exc))
        raise
    if rank == 0:
        _print(result.to_dict())
    return 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from model_core.evaluation import evaluate, resolve_max_tiles
    from model_core.model import load_model

    max_tiles = resolve_max_tiles(args.protocol, args.max_tiles)  # a bad combination fails before the model loads
    if args.remote_code:
        from model_core.scoring import RemoteCodeScorer

        model = RemoteCodeScorer(args.checkpoint, device=args.device, precision=args.precision, max_tiles=max_tiles)
    else:
        model = load_model(args.checkpoint, device=args.device, precision=args.precision)
    report = evaluate(model, args.data, split=args.split, max_tiles=max_tiles, batch_size=args.batch_size,
                      num_workers=args.num_workers, on_bad_image=args.on_bad_image, output_dir=args.output,
                      protocol=args.protocol, model_name=args.checkpoint)
    if report.reference_table is not None:
        logger.info("reference table (%s): %s", report.meta.get("reported_head"), ", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.reference_table.items()))
    _print(report.to_dict())
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    paths = list(args.images)
    if args.list:
        paths += [line.strip() for line in Path(args.list).read_text().splitlines() if line.strip()]
    if not paths:
        raise SystemExit("score: give image paths or --list FILE")
    if args.remote_code:
        from model_core.scoring import REFERENCE_MAX_TILES, RemoteCodeScorer

        # the reference's way: 12 tiles + thumbnail, fp16 on CUDA, run_metavoter + expert_score
        scorer = RemoteCodeScorer(args.checkpoint, device=args.device, precision=args.precision,
                                  max_tiles=args.max_tiles or REFERENCE_MAX_TILES)
        results = scorer.score_images(paths, on_bad_image=args.on_bad_image)
    else:
        from model_core.model import load_model
        from model_core.scoring import score_images

        if args.precision == "fp16":
            raise SystemExit("score: fp16 is for --remote-code checkpoints; ours run in bf16 or fp32")
        model = load_model(args.checkpoint, device=args.device, precision=args.precision)
        results = score_images(model, paths, max_tiles=args.max_tiles or 1, batch_size=args.batch_size,
                               num_workers=args.num_workers, on_bad_image=args.on_bad_image)
    _print([r.to_dict() for r in results])
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from model_core.synthetic import write_humanbeauty

    summary = write_humanbeauty(args.output, n_overall=args.n_overall, n_expert=args.n_expert, seed=args.seed,
                                size=(args.width, args.height), test_fraction=args.test_fraction,
                                image_format=args.format)
    _print(summary.to_dict())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from model_core.benchmark import run_prescore_benchmark

    _print(run_prescore_benchmark(tiny=args.tiny, device=args.device, n_images=args.n_images,
                                  batch_size=args.batch_size, reference_images=args.reference_images))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from model_core.convert import convert_internvl2

    report = convert_internvl2(args.source, args.output, lora_r=args.lora_r, head_kind=args.head_kind,
                               linear_head_output=args.linear_head_output, tokenizer_dir=args.tokenizer,
                               device=args.device, precision=args.precision)
    summary = report.to_dict()
    summary["consumed"] = len(report.consumed)  # the full lists are in OUT/conversion.json
    _print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_core", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    def runtime(p: argparse.ArgumentParser, *, remote_code: bool = False) -> None:
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"] + ["fp16"] * remote_code,
                       help="auto = bf16 on a GPU that has it, fp32 otherwise; bf16 elsewhere is an error"
                            + "; with --remote-code: fp16 on CUDA (as the reference), fp32 on CPU" * remote_code)
        p.add_argument("--max-tiles", type=int, default=None if remote_code else 1,
                       help="InternVL dynamic tiling: at most this many 448 px tiles (+ thumbnail); 1 = fastest"
                            + " (default 1; 12, the reference's, with --remote-code)" * remote_code)
        p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
        p.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes for decoding")
        p.add_argument("--on-bad-image", default="raise", choices=["raise", "skip"],
                       help="a missing/corrupt image: stop with an error naming it, or skip it and count it")

    p = sub.add_parser("train", help="train the heads (+ LoRA) and fit the MetaVoter", formatter_class=fmt)
    p.add_argument("--config", help="a JSON TrainConfig (all other training options are then ignored)")
    p.add_argument("--data", help="training jsonl (ms-swift style) or a HumanBeauty root (train_label.jsonl)")
    p.add_argument("--output", help="run directory: checkpoints/, final/, result.json; re-running resumes")
    p.add_argument("--backbone", default="tiny",
                   help="'tiny' (random init), a local InternVL (-hf) directory, or a repo id in the HF cache")
    p.add_argument("--model-config", help="a JSON ModelConfig (overrides --backbone/--lora-r)")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank on the language model")
    p.add_argument("--init-checkpoint", help="start from this saved model (e.g. the output of convert) instead of "
                                             "the backbone; its model config is used unless --model-config is given")
    p.add_argument("--recipe", choices=["platform", "reference"],
                   help="chat layout and prompts (docs/training-recipes.md); default: the --init-checkpoint's, "
                        "else platform for the tiny backbone and reference for InternVL2 weights")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the training records")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of LoRA and trained backbone parts")
    p.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of the regression/expert heads")
    p.add_argument("--checkpoint-every", type=int, default=200, help="optimizer steps between checkpoints")
    p.add_argument("--metavoter-fraction", type=float, default=0.1,
                   help="share of the training records held out to fit the MetaVoter")
    p.add_argument("--metavoter-folds", type=int, default=5,
                   help="cross-fitting folds: the MetaVoter's held-out figure is measured on records it was not "
                        "fitted on")
    p.add_argument("--seed", type=int, default=0, help="data order, prompt choice, hold-out split")
    p.add_argument("--no-resume", action="store_true", help="start over even if output holds checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress-jsonl", help="append every progress report (and a stop or an error) to this file as "
                                            "JSON lines")
    p.add_argument("--stop-file", help="stop (after writing a checkpoint; exit status 3) once this file exists")
    p.add_argument("--die-with-parent", action="store_true",
                   help="end when the parent process ends (Linux), e.g. when the launcher of a multi-process run dies")
    runtime(p)
    p.set_defaults(func=cmd_train, max_tiles=6, batch_size=8)

    p = sub.add_parser("evaluate", help="metrics per head and dimension, report.json + PNG plots",
                       formatter_class=fmt)
    p.add_argument("checkpoint", help="a model directory written by train (e.g. RUN/final)")
    p.add_argument("data", help="a HumanBeauty root (reads <split>_label.jsonl) or a training jsonl")
    p.add_argument("--split", default="test", choices=["train", "test"], help="which HumanBeauty split")
    p.add_argument("--output", help="write report.json and plots here (and reference_table.csv with "
                                    "--protocol reference)")
    p.add_argument("--remote-code", action="store_true",
                   help="the checkpoint is a released HumanAesExpert (trust_remote_code, local files only); what "
                        "it does not output (regression head, uncertainty) is reported as not available")
    p.add_argument("--protocol", default="ours", choices=["ours", "reference"],
                   help="ours: at --max-tiles (default 1); reference: as HumanAesExpert's eval script, 12 tiles + "
                        "thumbnail, the MetaVoter reported, its result columns in reference_table. Both report "
                        "our metrics and the reference's (labelled 'reference')")
    runtime(p)
    p.set_defaults(func=cmd_evaluate, max_tiles=None)

    p = sub.add_parser("score", help="score images: all heads + MetaVoter, one JSON object per image",
                       formatter_class=fmt)
    p.add_argument("checkpoint", help="a model directory written by train, or (with --remote-code) a local "
                                      "HumanAesExpert checkpoint")
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--list", help="a file with one image path per line")
    p.add_argument("--remote-code", action="store_true",
                   help="the checkpoint is a released HumanAesExpert (trust_remote_code, local files only), scored "
                        "as the reference does: 12 tiles + thumbnail, fp16 on CUDA, its run_metavoter and "
                        "expert_score; needs the runtime of `make humanaesexpert-runtime` first on PYTHONPATH")
    runtime(p, remote_code=True)
    p.set_defaults(func=cmd_score, on_bad_image="skip")

    p = sub.add_parser("synth", help="write synthetic images with known scores in the HumanBeauty layout",
                       formatter_class=fmt)
    p.add_argument("output", help="root folder to write")
    p.add_argument("--n-overall", type=int, default=100, help="overall-only (58K style) images")
    p.add_argument("--n-expert", type=int, default=100, help="12-dimension (50K style) images")
    p.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")
    p.add_argument("--width", type=int, default=224, help="image width in pixels")
    p.add_argument("--height", type=int, default=224, help="image height in pixels")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of each kind in test_label.jsonl")
    p.add_argument("--format", default="png", choices=["png", "jpg"], help="image file format")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("bench", help="pre-scoring throughput: reference way vs ours (see bench/prescore.py)",
                       formatter_class=fmt)
    p.add_argument("--tiny", action="store_true", help="the tiny model instead of the InternVL2-1B shape")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--n-images", type=int, default=64, help="images per measured configuration")
    p.add_argument("--reference-images", type=int, default=16, help="images for the (slow) reference way")
    p.add_argument("--batch-size", type=int, default=0, help="0 = choose per configuration")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("convert", help="InternVL2 / HumanAesExpert weights (original layout) -> a trainable checkpoint",
                       formatter_class=fmt)
    p.add_argument("source", help="a local InternVL2-1B/2B/8B or HumanAesExpert-1B/8B directory (config.json with "
                                  "llm_config + vision_config, vision_model.* / mlp1.* / language_model.* weights)")
    p.add_argument("output", help="new directory: backbone/, a model_core checkpoint, conversion.json")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank of the checkpoint (0: no LoRA)")
    p.add_argument("--head-kind", choices=["mlp", "linear", "linear_sigmoid"],
                   help="default: linear when HumanAesExpert heads are found and fit, else mlp")
    p.add_argument("--linear-head-output", default="identity", choices=["identity", "sigmoid"],
                   help="output transform of carried Linear heads (when --head-kind is not given)")
    p.add_argument("--tokenizer", help="take the tokenizer from this directory (a fast tokenizer, tokenizer.json)")
    p.add_argument("--device", default="cpu", help="where the converted model is built once to check and save it")
    p.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp32"], help="for that build")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from model_core.data import DataError
    from model_core.model import ModelLoadError, PrecisionError

    try:
        return int(args.func(args) or 0)
    except (DataError, ModelLoadError, PrecisionError, ValueError) as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), file=sys.stdout)
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
