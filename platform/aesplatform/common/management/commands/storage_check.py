"""`manage.py storage_check`: can this host use the configured storage? Run it on every new web or worker host.

It writes a small probe object, reads it back (whole, by range on S3, and into the local cache), lists it, deletes
it, and checks the local cache folder; with `--create-bucket` it first creates the S3 bucket when it does not exist
(a fresh object store).
Exit status 0 when everything worked, 1 with the failing step and its cause otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from aesplatform.common.objectstore import (
    StorageUnavailable,
    local_copy,
    s3_bucket_and_key,
    storage_description,
    storage_guard,
    storage_is_local,
)

PROBE_FOLDER = ".storage-check"


class Command(BaseCommand):
    help = "Check that this host can write, read, list and delete in the configured storage (and its local cache)."

    def add_arguments(self, parser):
        parser.add_argument("--create-bucket", action="store_true",
                            help="S3: create the bucket first when it does not exist")
        parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")

    def handle(self, *args, **options):
        figures: dict[str, object] = {"storage": storage_description(), "host": socket.gethostname()}
        try:
            if options["create_bucket"] and not storage_is_local():
                figures["bucket_created"] = self._create_bucket()
            figures.update(self._round_trip())
        except StorageUnavailable as exc:
            raise CommandError(exc.message) from exc
        cache = settings.AESP_STORAGE_CACHE_DIR
        if not storage_is_local():
            cache.mkdir(parents=True, exist_ok=True)
            figures["cache_dir"] = str(cache)
            figures["cache_bound_bytes"] = settings.AESP_STORAGE_CACHE_BYTES
            figures["cache_free_bytes"] = shutil.disk_usage(cache).free
        if options["json"]:
            self.stdout.write(json.dumps(figures))
        else:
            for key, value in figures.items():
                self.stdout.write(f"{key}: {value}")
            self.stdout.write(self.style.SUCCESS("storage OK"))

    def _create_bucket(self) -> bool:
        from botocore.exceptions import ClientError

        bucket = default_storage.bucket
        with storage_guard("checking the bucket"):
            try:
                bucket.meta.client.head_bucket(Bucket=bucket.name)
                return False
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise CommandError(f"the bucket {bucket.name} cannot be used: {exc}") from exc
            region = getattr(default_storage, "region_name", None)
            extra = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region and region != "us-east-1" \
                else {}
            bucket.create(**extra)
        return True

    def _round_trip(self) -> dict[str, object]:
        data = os.urandom(64 * 1024)
        name = f"{PROBE_FOLDER}/{socket.gethostname()}-{uuid.uuid4().hex[:12]}.bin"
        started = time.monotonic()
        with storage_guard("writing a probe object"):
            saved = default_storage.save(name, ContentFile(data))
        written = time.monotonic()
        try:
            with storage_guard("reading the probe object"):
                with default_storage.open(saved, "rb") as handle:
                    if handle.read() != data:
                        raise CommandError(f"the probe object {saved} read back different bytes")
                s3 = s3_bucket_and_key()
                if s3 is not None:  # downloads of export archives resume with ranged reads
                    bucket, key_of = s3
                    part = bucket.Object(key_of(saved)).get(Range="bytes=100-199")["Body"].read()
                    if part != data[100:200]:
                        raise CommandError(f"a ranged read of the probe object {saved} returned other bytes")
                copy = local_copy(saved)
                if copy.read_bytes() != data:
                    raise CommandError(f"the local copy {copy} of {saved} differs from what was written")
                _dirs, files = default_storage.listdir(PROBE_FOLDER)
                if saved.rpartition("/")[2] not in files:
                    raise CommandError(f"the probe object {saved} is not listed in {PROBE_FOLDER}/")
            read = time.monotonic()
        finally:
            with storage_guard("deleting the probe object"):
                default_storage.delete(saved)
            if not storage_is_local():
                local_copy_path = settings.AESP_STORAGE_CACHE_DIR
                for stale in local_copy_path.rglob(f"{PROBE_FOLDER}/*"):
                    stale.unlink(missing_ok=True)
        return {"write_ms": round((written - started) * 1000, 1), "read_ms": round((read - written) * 1000, 1)}
