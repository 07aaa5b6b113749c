"""S3-compatible storage on boto3: streamed (multipart) puts, streamed reads.

Errors of botocore are translated at this edge: a missing object is FileNotFoundError,
as in every backend. Transient 5xx and throttling are retried by botocore's own
"standard" retry mode (exponential backoff with jitter).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from imgress.storage.base import ObjectStat

_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Storage:
    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, public_url: str | None = None,
                 presign_endpoint: str | None = None, spool_root: Path | None = None,
                 retries: int = 8):
        self.bucket, self.prefix = bucket, prefix
        self.public_url = public_url.rstrip("/") if public_url else None
        self._endpoint, self._region = endpoint_url, region or "us-east-1"
        self._probe_client: Any = None
        self._client = self._make_client(
            endpoint_url, retries={"max_attempts": retries, "mode": "standard"})
        # Clients PUT to presigned URLs from outside (a browser, a phone); the server
        # may reach the store by a name they cannot (http://minio:9000 in compose).
        # SigV4 signs the host, so the URL is made by a client for the outside name;
        # presigning is local, no request is sent.
        self._presigner = (self._make_client(presign_endpoint) if presign_endpoint
                           else self._client)
        self._transfer = TransferConfig(multipart_threshold=64 * 1024**2,
                                        multipart_chunksize=16 * 1024**2)
        self._spool = Path(spool_root or tempfile.gettempdir()) / "imgress-spool"
        self._spool.mkdir(parents=True, exist_ok=True)

    def _make_client(self, endpoint_url: str | None, **config: object) -> Any:
        # SigV4: presigned PUTs bind Content-Length and Content-Type (V2 cannot).
        return boto3.client("s3", endpoint_url=endpoint_url, region_name=self._region,
                            config=Config(signature_version="s3v4",
                                          s3={"addressing_style": "path"}, **config))

    def _key(self, key: str) -> str:
        if not key or key.startswith(("/", ".")) or ".." in key.split("/"):
            raise ValueError(f"storage key outside the store: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, source: Path | str) -> bool:
        try:
            try:
                self.stat(key)
                return False  # content addressing: the same bytes are already there
            except FileNotFoundError:
                pass
            if isinstance(source, str):
                # Server-side copy (multipart above the threshold, so past 5 GB too).
                self._client.copy({"Bucket": self.bucket, "Key": self._key(source)},
                                  self.bucket, self._key(key), Config=self._transfer)
            else:
                self._client.upload_file(str(source), self.bucket, self._key(key),
                                         Config=self._transfer)
            return True
        except ClientError as exc:
            raise _translate(exc, str(source)) from None
        finally:
            if isinstance(source, str):
                self.delete(source)
            else:
                source.unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            raise _translate(exc, key) from None
        return body  # type: ignore[no-any-return]  # a streaming, file-like body

    def stat(self, key: str) -> ObjectStat:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            raise _translate(exc, key) from None
        return ObjectStat(size=head["ContentLength"], mtime=head["LastModified"].timestamp())

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def url(self, key: str) -> str:
        if self.public_url:
            return f"{self.public_url}/{self._key(key)}"
        return self._presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=3600)

    def presign_put(self, key: str, size: int, content_type: str, expires_in: int
                    ) -> tuple[str, dict[str, str]] | None:
        url = self._presigner.generate_presigned_url(
            "put_object", ExpiresIn=expires_in,
            Params={"Bucket": self.bucket, "Key": self._key(key),
                    "ContentType": content_type, "ContentLength": size})
        return url, {"Content-Type": content_type, "Content-Length": str(size)}

    def spool_dir(self) -> Path:
        return self._spool

    def probe(self) -> None:
        """Readiness: is the bucket reachable now? One try, short timeouts (the main
        client retries for up to a minute, which a probe polled every second must not)."""
        if self._probe_client is None:
            self._probe_client = self._make_client(
                self._endpoint, retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=1, read_timeout=1)
        self._probe_client.head_bucket(Bucket=self.bucket)


def _translate(exc: ClientError, key: str) -> Exception:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _MISSING:
        return FileNotFoundError(key)
    return exc
