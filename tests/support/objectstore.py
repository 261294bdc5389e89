"""A real S3-protocol server on loopback for the object-storage tests, and a connection the test can cut.

The server is moto's standalone server (`python -m moto.server`, package `moto`, Apache-2.0, pure Python, from
PyPI): it speaks the S3 REST protocol over HTTP (SigV4, multipart uploads, ranged GETs, listings), so boto3 and
django-storages talk to it exactly as to AWS S3, MinIO or Ceph; it starts in about a second with no binary to
fetch, and keeps its objects in its own process, so every process of a test (the test, web, workers) sees the same
bucket. (MinIO's server is not on PyPI and is AGPL; LocalStack needs Docker.)

Clients reach it through `CuttableProxy`, a TCP relay the test controls: `outage()` refuses new connections and
drops open ones for as long as the block runs, which is what a store that is briefly unavailable looks like to a
client (a restart, a network blip).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ACCESS_KEY = "aesp-test-access"
SECRET_KEY = "aesp-test-secret"  # noqa: S105 - a test server's made-up key
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3-protocol server as a subprocess on 127.0.0.1."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = Path(log_dir) / f"s3-server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the S3 server exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the S3 server did not answer in 30 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "log", None):
            self.log.close()


class CuttableProxy:
    """A TCP relay 127.0.0.1:port -> the server; `outage()` makes the store unreachable while it runs."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.connections_made = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="s3-proxy").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: an outage or the end
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections.update((client, upstream))
                self.connections_made += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)

    def cut(self) -> None:
        """Refuse new connections and reset the open ones (connection refused / reset by peer, as a real outage)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone would not)
            self._listener.close()
            self._listener = None
        with self._lock:
            open_now = list(self._connections)
        for s in open_now:
            with contextlib.suppress(OSError):
                # linger 0: the close sends a reset; shutdown first wakes the relay threads blocked in recv()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        if self._listener is None:
            self.start()

    @contextlib.contextmanager
    def outage(self):
        self.cut()
        try:
            yield
        finally:
            self.restore()

    def outage_for(self, seconds: float) -> threading.Thread:
        """Cut now, restore after `seconds` in the background (a store that comes back while a job waits)."""
        self.cut()
        timer = threading.Timer(seconds, self.restore)
        timer.daemon = True
        timer.start()
        return timer

    def stop(self) -> None:
        self.cut()


class ObjectStore:
    """One test's bucket on the shared server, reached through the proxy: settings, worker env, a boto3 client."""

    def __init__(self, server: S3Server, proxy: CuttableProxy, *, multipart_bytes: int = 5 * 1024 * 1024) -> None:
        self.server = server
        self.proxy = proxy
        self.bucket = f"aesp-test-{uuid.uuid4().hex[:12]}"
        self.multipart_bytes = multipart_bytes

    @property
    def endpoint_url(self) -> str:
        return self.proxy.url

    def client(self, *, direct: bool = True, max_attempts: int = 2):
        """A boto3 client (direct: to the server itself, unaffected by an outage of the proxy)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.server.url if direct else self.proxy.url, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": max_attempts, "mode": "standard"},
                          connect_timeout=2, read_timeout=10),
        )

    def create_bucket(self) -> None:
        self.client().create_bucket(Bucket=self.bucket)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket (under `prefix`), read directly from the server."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(o["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                      for o in page.get("Contents", []))

    def multipart_uploads(self) -> list[str]:
        """Keys with a multipart upload started and neither completed nor aborted (half-written objects)."""
        return [u["Key"] for u in self.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])]

    def env(self, *, max_attempts: int = 3) -> dict[str, str]:
        """What a web or worker process needs to use this bucket (the variables of settings.py)."""
        return {
            "AESP_STORAGE_BACKEND": "s3",
            "AESP_S3_BUCKET": self.bucket,
            "AESP_S3_ENDPOINT_URL": self.endpoint_url,
            "AESP_S3_REGION": REGION,
            "AESP_S3_MAX_ATTEMPTS": str(max_attempts),
            "AESP_S3_CONNECT_TIMEOUT_S": "2",
            "AESP_S3_READ_TIMEOUT_S": "10",
            "AESP_S3_MULTIPART_BYTES": str(self.multipart_bytes),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def storages_setting(self, *, max_attempts: int = 3) -> dict:
        """settings.STORAGES["default"] for this bucket (what settings.py builds from `env()`)."""
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": self.bucket, "endpoint_url": self.endpoint_url, "region_name": REGION,
                "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "querystring_auth": True, "file_overwrite": True,
                "client_config": Config(
                    retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=2, read_timeout=10,
                    s3={"addressing_style": "path"}, signature_version="s3v4"),
                "transfer_config": TransferConfig(multipart_threshold=self.multipart_bytes,
                                                  multipart_chunksize=self.multipart_bytes),
            },
        }
