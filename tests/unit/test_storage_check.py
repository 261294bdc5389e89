"""`manage.py storage_check` against the filesystem and a real S3-protocol server."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command


def _check(*args: str) -> dict:
    out = StringIO()
    call_command("storage_check", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_storage_check_passes_on_the_media_folder(settings):
    figures = _check()
    assert "media folder" in figures["storage"]
    assert not any(settings.MEDIA_ROOT.rglob("*.bin"))  # the probe is gone


def test_storage_check_creates_a_missing_bucket_and_leaves_it_empty(s3_storage):
    s3_storage.client().delete_bucket(Bucket=s3_storage.bucket)
    figures = _check("--create-bucket")
    assert figures["bucket_created"] is True
    assert s3_storage.keys() == []
    assert figures["cache_bound_bytes"] > 0


def test_storage_check_fails_clearly_when_the_store_is_down(s3_storage):
    with s3_storage.proxy.outage(), pytest.raises(CommandError) as raised:
        _check()
    assert "unavailable while writing a probe object" in str(raised.value)
