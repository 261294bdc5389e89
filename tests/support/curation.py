"""Thresholds that use pixels only (no CLIP) and a filter run executed in-process, for curation tests."""

from __future__ import annotations

from aesplatform.curation import services
from aesplatform.curation.models import FilterRun

# No CLIP rule (random weights say nothing) and no face needed: proposals come from the pixel checks only.
PIXEL_ONLY = {"clip": {"person_subject": None, "single_person": None, "photograph": None, "quality_problems": None},
              "min_faces": 0, "max_faces": 10, "near_duplicate_cosine": 0.998}


def run_in_process(run: FilterRun) -> FilterRun:
    services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    run.refresh_from_db()
    return run
