"""`manage.py storage_orphans [--delete]`: stored files that nothing refers to (see docs/storage.md)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("List (or delete) stored images, thumbnails and staged uploads that no row refers to: what an import "
            "interrupted by a store outage or a kill leaves when the job is then cancelled instead of resumed.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than-hours", type=float, default=24.0,
                            help="only files last written before this many hours ago (default 24)")
        parser.add_argument("--delete", action="store_true", help="delete them (default: list only)")

    def handle(self, *args, **options):
        from aesplatform.catalog import selectors, services
        from aesplatform.common.exceptions import ServiceError

        if options["older_than_hours"] < 0:
            raise CommandError("--older-than-hours must not be negative.")
        try:
            orphans = selectors.storage_orphans(older_than_s=options["older_than_hours"] * 3600)
            for name in orphans:
                self.stdout.write(name)
            if options["delete"]:
                deleted = services.storage_orphans_delete(names=orphans)
                self.stdout.write(f"{deleted} file(s) deleted")
            else:
                self.stdout.write(f"{len(orphans)} file(s) nothing refers to" +
                                  (" (run with --delete to delete them)" if orphans else ""))
        except ServiceError as exc:
            raise CommandError(exc.message) from None
