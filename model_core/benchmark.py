"""Pre-scoring throughput: the reference way versus ours (used by ``bench/prescore.py`` and the CLI).

(a) reference: one image per forward, 12 tiles, full-vocabulary logits, and the MetaVoter as two passes
    (overall prompt for LM + regression, expert prompt for the expert head), as the released remote code does;
(b) ours, max_tiles 12: ``score_images`` batching across images, one pass, level-word logits only;
(c) ours, max_tiles 1: the fast pre-scoring mode.
The model is InternVL2-1B-shaped (InternViT-300M-448px + Qwen2-0.5B sizes) with random weights, bf16 and sdpa
on a GPU; ``tiny=True`` uses the test-size model (the only sensible choice on a CPU).
"""

from __future__ import annotations

import logging
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _write_images(directory: Path, n: int, size: tuple[int, int]) -> list[str]:
    from model_core.synthetic import generate_image

    paths = []
    for i in range(n):
        image, _ = generate_image(seed=i, size=size)
        path = directory / f"bench_{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


@torch.inference_mode()
def reference_way(model, paths: list[str], *, max_tiles: int = 12) -> None:
    """One image at a time, two full forward passes with full-vocabulary logits (MetaVoter as in the reference)."""
    from model_core.data import image_to_pixels, load_image
    from model_core.standard import prompt_lists

    builder = model.prompts
    for path in paths:
        pixels = image_to_pixels(load_image(path), max_tiles=max_tiles, tile_size=model.tile_size)
        pixels = pixels.to(model.device, model.backbone_dtype)
        n_tokens = pixels.shape[0] * model.tokens_per_tile
        overall = builder.encode(n_image_tokens=n_tokens, is_expert=False, scores=[0.0] * 12, index=0, train=False)
        expert_builder_prompt = builder.chat.inference_prompt
        try:  # the second pass asks the expert question
            object.__setattr__(builder.chat, "inference_prompt", prompt_lists(builder.chat.recipe)[1][0])
            expert = builder.encode(n_image_tokens=n_tokens, is_expert=True, scores=[0.0] * 12, index=0,
                                    train=False)
        finally:
            object.__setattr__(builder.chat, "inference_prompt", expert_builder_prompt)
        for ids, h in ((overall.input_ids, overall.lm_index), (expert.input_ids, expert.lm_index)):
            input_ids = torch.tensor([ids], device=model.device)
            with torch.autocast(model.device.type, dtype=model.backbone_dtype,
                                enabled=model.backbone_dtype != torch.float32):
                out = model.backbone(input_ids=input_ids, pixel_values=pixels, output_hidden_states=True,
                                     use_cache=False)
            hidden = out.hidden_states[-1][:, h].float()
            model.regression_head(hidden)
            model.expert_head(hidden)
            out.logits[:, h].float().softmax(-1)


def run_prescore_benchmark(
    *, tiny: bool = False, device: str = "auto", n_images: int = 64, batch_size: int = 0,
    reference_images: int = 16, image_size: tuple[int, int] = (896, 672), num_workers: int = 4,
) -> dict[str, Any]:
    """Measure (a), (b), (c) and return the figures as a dict (one JSON line in bench/prescore.py)."""
    from model_core.model import BackboneConfig, ModelConfig, TinyBackboneConfig, build_model, resolve_device
    from model_core.scoring import score_images

    dev = resolve_device(device)
    if not tiny and dev.type != "cuda":
        logger.warning("the InternVL2-1B-shaped model on a CPU is impractically slow; using the tiny model")
        tiny = True
    shape = TinyBackboneConfig() if tiny else TinyBackboneConfig.internvl2_1b()
    config = ModelConfig(backbone=BackboneConfig(source="tiny", tiny=shape, attn_implementation="sdpa"), lora=None)
    model = build_model(config, device=dev, precision="auto")
    if tiny:
        image_size = (shape.tile_size * 2, shape.tile_size * 3 // 2)
    results: dict[str, Any] = {
        "model": "tiny" if tiny else "internvl2-1b-shape (InternViT-300M-448px + Qwen2-0.5B, random weights)",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda"
        else f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)",
        "dtype": str(model.backbone_dtype).replace("torch.", ""), "attn": "sdpa", "image_size": list(image_size),
        "tile_size": model.tile_size, "tokens_per_tile": model.tokens_per_tile,
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_images(Path(tmp), max(n_images, reference_images), image_size)
        # warm-up (kernels, allocator) on a few images
        score_images(model, paths[:2], max_tiles=1, batch_size=2)
        reference_way(model, paths[:1])

        _reset_peak(dev)
        start = time.perf_counter()
        reference_way(model, paths[:reference_images])
        _sync(dev)
        elapsed = time.perf_counter() - start
        results["a_reference"] = {"images_per_s": reference_images / elapsed, "batch_size": 1, "max_tiles": 12,
                                  "passes_per_image": 2, "n_images": reference_images,
                                  "peak_memory_mb": _peak_memory_mb(dev)}
        for key, max_tiles, default_bs in (("b_ours_tiles12", 12, 16), ("c_ours_tiles1", 1, 128)):
            bs = batch_size or default_bs
            _reset_peak(dev)
            start = time.perf_counter()
            scored = score_images(model, paths[:n_images], max_tiles=max_tiles, batch_size=bs,
                                  num_workers=num_workers)
            _sync(dev)
            elapsed = time.perf_counter() - start
            if any(s.error for s in scored):
                raise RuntimeError(f"benchmark images failed to score: {[s.error for s in scored if s.error][:1]}")
            results[key] = {"images_per_s": n_images / elapsed, "batch_size": bs, "max_tiles": max_tiles,
                            "passes_per_image": 1, "n_images": n_images, "peak_memory_mb": _peak_memory_mb(dev)}
    a = results["a_reference"]["images_per_s"]
    results["b_over_a"] = results["b_ours_tiles12"]["images_per_s"] / a
    results["c_over_a"] = results["c_ours_tiles1"]["images_per_s"] / a
    results["targets_h100"] = {"b_images_per_s": 50, "c_images_per_s": 600, "b_over_a": 4}
    if dev.type != "cuda" or tiny:
        results["note"] = ("CPU/tiny-model figures only; the H100 targets for the InternVL2-1B shape are still open "
                           "(run bench/prescore.py on a GPU)")
    else:
        results["targets_met"] = {
            "b": results["b_ours_tiles12"]["images_per_s"] >= 50,
            "c": results["c_ours_tiles1"]["images_per_s"] >= 600,
            "b_over_a": results["b_over_a"] >= 4,
        }
    results = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in results.items()}
    for v in results.values():
        if isinstance(v, dict):
            for kk, vv in v.items():
                if isinstance(vv, float):
                    v[kk] = round(vv, 3)
    return results


__all__ = ["reference_way", "run_prescore_benchmark", "np"]
