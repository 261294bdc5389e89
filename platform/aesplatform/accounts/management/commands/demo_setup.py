"""Demo users and demo images for `make run`. Idempotent: a second run creates nothing new.

The demo images are approved at once (without a review), so that "New campaign" has them available; the newest
few stay imported, for trying a filter run. What a curator decided since is never undone by a later run.

The synthetic demo people are drawings: no face a detector finds, soft edges, so a filter run proposes every one of
them for rejection. A few real photos that ship inside scikit-image's wheel (a runtime dependency) are imported
too, as their own import job, and left imported: a filter run over them shows both outcomes, the astronaut (one
face, sharp) kept and the others (a cat, a cup of coffee, a rocket, ... no person's face) proposed for rejection,
each with its reasons.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import skimage.data
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from aesplatform.accounts.roles import Role
from aesplatform.accounts.services import user_create
from aesplatform.catalog.models import Image, ImportJob, ImportKind
from aesplatform.catalog.selectors import images_approved_count
from aesplatform.catalog.services import images_approve_unreviewed, import_job_create, import_job_run
from model_core.synthetic import write_humanbeauty

DEMO_SOURCE = "demo"
SAMPLES_SOURCE = "scikit-image samples"
# files of skimage.data's own folder (shipped in the wheel, nothing downloaded): real photos, one with a person
SAMPLE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                 "hubble_deep_field.jpg")

DEMO_USERS: tuple[tuple[str, list[Role]], ...] = (
    ("admin", [Role.ADMIN]),
    ("curator", [Role.CURATOR]),
    ("annotator1", [Role.ANNOTATOR]),
    ("annotator2", [Role.ANNOTATOR]),
    ("annotator3", [Role.ANNOTATOR]),
)


class Command(BaseCommand):
    help = "Create demo users (passwords printed once) and import a few hundred synthetic demo images."

    def add_arguments(self, parser):
        parser.add_argument("--overall", type=int, default=200, help="overall-only (58K-style) demo images")
        parser.add_argument("--expert", type=int, default=100, help="expert (50K-style, 12 scores) demo images")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--unfiltered", type=int, default=48,
                            help="the newest demo images left imported, for trying a filter run (at most a quarter)")

    def handle(self, *args, overall: int, expert: int, seed: int, unfiltered: int, **options):
        created = self._users()
        if created:
            self.stdout.write(self.style.SUCCESS("Demo users (the passwords are shown only this once):"))
            for username, password, roles in created:
                self.stdout.write(f"  {username:<11} {password}   ({', '.join(r.value for r in roles)})")
        else:
            self.stdout.write("Demo users exist already (reset a password with: manage.py changepassword NAME).")
        self._images(overall=overall, expert=expert, seed=seed)
        self._approve(unfiltered=unfiltered)
        self._samples()

    def _users(self) -> list[tuple[str, str, list[Role]]]:
        existing = set(
            get_user_model().objects.filter(username__in=[u for u, _ in DEMO_USERS]).values_list("username", flat=True)
        )
        created = []
        for username, roles in DEMO_USERS:
            if username in existing:
                continue
            password = secrets.token_urlsafe(12)
            user_create(username=username, password=password, roles=roles, email=f"{username}@demo.invalid")
            created.append((username, password, roles))
        return created

    def _approve(self, *, unfiltered: int) -> None:
        """Approve the demo images nobody has decided on, except the newest `unfiltered` (a stable choice: the
        same images are left on every run, so running the command again approves nothing new)."""
        demo = Image.objects.filter(import_job__source_name=DEMO_SOURCE)
        ids = list(demo.order_by("id").values_list("id", flat=True))
        left = min(max(0, unfiltered), len(ids) // 4)
        approved = images_approve_unreviewed(image_ids=ids[: len(ids) - left])
        usable = images_approved_count(image_ids=ids)
        self.stdout.write(
            f"Demo images approved for campaigns: {usable}" + (f" ({approved} just now)" if approved else "")
            + (f"; {left} left imported, to try a filter run on." if left else ".")
        )

    def _import_once(self, *, source: str, folder: str, kind: str, what: str, fill) -> ImportJob | None:
        """Import `folder` (written by `fill(root)` below the first import root) as `source`, once: None, and
        nothing done, when that source was imported before."""
        if ImportJob.objects.filter(source_name=source).exists():
            count = Image.objects.filter(import_job__source_name=source).count()
            self.stdout.write(f"{what} exist already ({count} images).")
            return None
        root = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0]) / folder
        if root.exists():
            shutil.rmtree(root)  # a half-written folder from an interrupted run
        fill(root)
        curator = get_user_model().objects.get(username="curator")
        job = import_job_create(created_by=curator, kind=kind, path=str(root), source_name=source, enqueue=False)
        return import_job_run(job_id=job.pk)

    def _images(self, *, overall: int, expert: int, seed: int) -> None:
        """Synthetic people with known scores (model_core.synthetic), imported as a HumanBeauty folder."""
        job = self._import_once(
            source=DEMO_SOURCE, folder="demo-humanbeauty", kind=ImportKind.HUMANBEAUTY, what="Demo images",
            fill=lambda root: write_humanbeauty(root, n_overall=overall, n_expert=expert, seed=seed,
                                                size=(448, 448), image_format="jpg"),
        )
        if job is not None:
            self.stdout.write(
                f"Demo images: {job.imported_count} imported with {job.labels_count} labels "
                f"({job.duplicate_count} duplicates, {job.error_count} errors)."
            )

    def _samples(self) -> None:
        """scikit-image's sample photos, imported as a folder of their own and left imported for a filter run."""
        def copy_samples(root: Path) -> None:
            root.mkdir(parents=True)
            for name in SAMPLE_PHOTOS:
                shutil.copyfile(Path(skimage.data.data_dir) / name, root / name)

        job = self._import_once(source=SAMPLES_SOURCE, folder="demo-samples", kind=ImportKind.FOLDER,
                                what="Sample photos", fill=copy_samples)
        if job is not None:
            self.stdout.write(
                f"Sample photos (scikit-image): {job.imported_count} imported, left for a filter run "
                f"({job.duplicate_count} duplicates, {job.error_count} errors)."
            )
