"""`manage.py demo_loop`: the whole loop on synthetic images, stage by stage, through the API and the worker.

A Celery worker must serve the `cpu` and `gpu` queues (`make run` starts one). Users `loop-curator` and
`loop-annotator1..3` are created if missing (no passwords: they only act through this command) and put in the
"simulated" group: they keep their roles, but annotator pickers leave them out. The loop promotes its model only
when no model is promoted or the promoted one was promoted by the loop itself: a model a person promoted stays.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run import -> filter -> approve -> campaign -> simulated annotators -> consensus -> dataset version -> " \
           "export -> training -> promote -> pre-score on synthetic images, printing each stage."

    def add_arguments(self, parser):
        parser.add_argument("--images", type=int, default=200, help="synthetic images (default 200)")
        parser.add_argument("--epochs", type=float, default=14.0, help="tiny-cpu training epochs (default 14)")
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--redundancy", type=int, default=2)
        parser.add_argument("--seed", type=int, default=None,
                            help="synthetic data seed (default: a new one each run; the catalog skips images it "
                                 "already holds, so a repeated seed would import nothing new)")
        parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")

    def handle(self, *args, **options):
        from rest_framework.test import APIClient

        from aesplatform.accounts.roles import Role
        from aesplatform.celery import app
        from aesplatform.modeling.demo import LoopError, run_loop, simulated_user

        if options["images"] < 20:
            raise CommandError("--images must be at least 20 (a test split needs some images).")
        if options["redundancy"] > options["annotators"]:
            raise CommandError("--redundancy cannot exceed --annotators.")
        try:
            alive = app.control.inspect(timeout=2).ping()
        except Exception as exc:  # noqa: BLE001 - broker down: say so plainly
            raise CommandError(f"Cannot reach the Celery broker ({exc}). Start the platform: make run.") from None
        if not alive:
            raise CommandError("No Celery worker answers: start one on queues cpu,gpu (make run does).")
        def client(account):
            api = APIClient(SERVER_NAME="localhost")
            api.force_authenticate(account)
            return api

        if options["seed"] is None:
            import secrets

            options["seed"] = secrets.randbelow(2**31)
        curator = simulated_user("loop-curator", Role.CURATOR)
        annotators = [simulated_user(f"loop-annotator{i + 1}", Role.ANNOTATOR) for i in range(options["annotators"])]
        incoming = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0])
        incoming.mkdir(parents=True, exist_ok=True)
        self.stdout.write(f"demo loop: {options['images']} synthetic images under {incoming}, "
                          f"{len(annotators)} simulated annotators, tiny-cpu {options['epochs']} epochs, "
                          f"seed {options['seed']}")
        try:
            figures = run_loop(curator_api=client(curator), annotators=[(a, client(a)) for a in annotators],
                               incoming=incoming, n_images=options["images"], epochs=options["epochs"],
                               redundancy=options["redundancy"], seed=options["seed"],
                               say=lambda line: self.stdout.write(line))
        except LoopError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"loop done: held-out PLCC {figures['heldout_plcc']:.3f}, {figures['prescored']} images pre-scored by "
            f"{figures['model']['name']} ({figures['promotion']})"))
        if options["json"]:
            self.stdout.write(json.dumps({"heldout_plcc": figures["heldout_plcc"], "stages": figures["stages"],
                                          "prescore_truth_plcc": figures["prescore_truth_plcc"]}))
