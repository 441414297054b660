"""The ``s3`` driver: any S3-compatible endpoint, through boto3.

Bucket, prefix, region and endpoint come from the Platform manifest; credentials come only from
boto3's standard chain (environment, profile, instance role), never from a manifest. Uploads go
through boto3's transfer manager, multipart above 8 MiB, with ``ChecksumAlgorithm=SHA256`` so
that S3 checks every part it receives. The object's full sha256 is stored in its metadata
(``x-amz-meta-sha256``), which :meth:`S3Driver.stat` reads back, so verification compares like
with like; for a single-part upload the checksum S3 computed itself is compared too.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from reconciler.drivers.base import (
    DOWN,
    HEALTHY,
    Cancelled,
    Driver,
    PermanentError,
    Progress,
    RemoteObject,
    TemporaryError,
    Uploaded,
)
from reconciler.models import Platform
from reconciler.sources import sha256_file

MULTIPART_THRESHOLD = 8 * 1024 * 1024
TEMPORARY_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestTimeTooSkewed",
    "TooManyRequestsException",
    "500",
    "502",
    "503",
    "504",
}
SHA_KEY = "sha256"


def failure(exc: Exception, doing: str) -> Exception:
    """A boto3 exception as a driver failure (a cancellation passes through)."""
    if isinstance(exc, Cancelled):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return PermanentError(
            f"{doing}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (they are never read from a manifest)"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message") or code
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        retry_after = headers.get("retry-after")
        if code in TEMPORARY_CODES or status in (429, 500, 502, 503, 504):
            return TemporaryError(
                f"{doing}: {code} {message}", float(retry_after) if retry_after else None
            )
        return PermanentError(f"{doing}: {code} {message}")
    if isinstance(exc, BotoConnectionError):
        return TemporaryError(f"{doing}: cannot reach the endpoint ({exc})")
    if isinstance(exc, BotoCoreError):
        return TemporaryError(f"{doing}: {exc}")
    return PermanentError(f"{doing}: {exc}")


class S3Driver(Driver):
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        config = platform.driver_config
        self.bucket: str = config["bucket"]
        self.prefix: str = config.get("prefix", "")
        self.endpoint: str | None = config.get("endpoint_url")
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=config.get("region"),
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_THRESHOLD,
            max_concurrency=4,
        )

    def full_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def url(self, key: str) -> str:
        path = quote(self.full_key(key))
        if self.endpoint:
            return f"{self.endpoint.rstrip('/')}/{self.bucket}/{path}"
        return f"https://{self.bucket}.s3.amazonaws.com/{path}"

    def upload(
        self, source: Path, key: str, metadata: dict[str, Any], progress: Progress | None = None
    ) -> Uploaded:
        try:
            digest = sha256_file(source)
        except FileNotFoundError:
            raise PermanentError(f"the master file {source} has vanished") from None
        size = source.stat().st_size
        sent = 0

        def callback(n: int) -> None:
            nonlocal sent
            sent += n
            if progress is not None:
                progress(sent)

        extra = {
            "Metadata": {SHA_KEY: digest, "asset": _ascii(metadata.get("code", ""))},
            "ChecksumAlgorithm": "SHA256",
            "ContentType": metadata.get("mime_type") or "application/octet-stream",
        }
        full = self.full_key(key)
        try:
            self.client.upload_file(
                str(source),
                self.bucket,
                full,
                ExtraArgs=extra,
                Callback=callback,
                Config=self.transfer,
            )
            head = self.client.head_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
        except Exception as exc:
            raise failure(exc, f"uploading s3://{self.bucket}/{full}") from None
        landed = head.get("Metadata", {}).get(SHA_KEY)
        if head.get("ContentLength") != size:
            landed = f"size {head.get('ContentLength')} != {size}"
        s3_sum = head.get("ChecksumSHA256")
        if s3_sum and "-" not in s3_sum and size <= MULTIPART_THRESHOLD:
            computed = base64.b64decode(s3_sum).hex()
            if computed != digest:
                landed = computed
        return Uploaded(
            platform_asset_id=f"s3://{self.bucket}/{full}",
            url=self.url(key),
            remote_checksum=landed or "",
            details={"etag": head.get("ETag")},
        )

    def stat(self, key: str) -> RemoteObject | None:
        full = self.full_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise failure(exc, f"reading s3://{self.bucket}/{full}") from None
        except Exception as exc:
            raise failure(exc, f"reading s3://{self.bucket}/{full}") from None
        return RemoteObject(
            checksum=head.get("Metadata", {}).get(SHA_KEY),
            size=head.get("ContentLength"),
            details={"etag": head.get("ETag")},
        )

    def delete(self, key: str) -> None:
        full = self.full_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise failure(exc, f"deleting s3://{self.bucket}/{full}") from None

    def update_metadata(self, key: str, metadata: dict[str, Any]) -> None:
        full = self.full_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
            kept = dict(head.get("Metadata", {}))
            kept["asset"] = _ascii(metadata.get("code", kept.get("asset", "")))
            self.client.copy_object(
                Bucket=self.bucket,
                Key=full,
                CopySource={"Bucket": self.bucket, "Key": full},
                Metadata=kept,
                MetadataDirective="REPLACE",
                ContentType=metadata.get("mime_type") or head.get("ContentType"),
            )
        except Exception as exc:
            raise failure(exc, f"updating the metadata of s3://{self.bucket}/{full}") from None

    def health_check(self) -> tuple[str, str]:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            return DOWN, str(failure(exc, f"bucket {self.bucket}"))
        return HEALTHY, f"bucket {self.bucket} answers"

    def cleanup(self) -> int:
        """Abort multipart uploads under our prefix that an interrupted run left open."""
        try:
            listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
            uploads = listing.get("Uploads", [])
            for upload in uploads:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        except Exception as exc:
            raise failure(exc, f"cleaning up bucket {self.bucket}") from None
        return len(uploads)


def _ascii(text: str) -> str:
    """S3 user metadata must be US-ASCII."""
    return text.encode("ascii", "backslashreplace").decode("ascii")
