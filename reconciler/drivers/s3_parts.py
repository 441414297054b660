"""S3 multipart parts and S3's checksums, for the ``s3`` driver (:mod:`reconciler.drivers.s3`).

:func:`send_parts` reads a payload in parts, in order, through its one hashing reader (so the
whole payload is hashed as it is read) and uploads up to :data:`PART_WORKERS` parts at once,
each with its own SHA-256, which S3 checks against the bytes it receives. The composite
checksum S3 reports for such an object is the SHA-256 of the parts' SHA-256s
(:func:`composite_of`); the helpers below compare S3's forms of it. :func:`failure` tells
what a boto3 exception means to apply (temporary, permanent), for every S3 call of the driver.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from reconciler.drivers.base import Cancelled, PermanentError, Progress, TemporaryError
from reconciler.observe.payload import Payload

PART_SIZE = 8 * 1024 * 1024  # above this, a multipart upload of parts this size
PART_WORKERS = 4  # parts in flight at once

Part = tuple[int, str, bytes]  # (part number, ETag, the part's SHA-256)


def send_parts(
    client: Any, bucket: str, full: str, upload_id: str, payload: Payload, progress: Progress | None
) -> list[Part]:
    """Upload the payload's parts to the multipart upload ``upload_id``; the whole payload
    read must be the expected bytes (else SourceChanged, with the upload left to abort)."""
    reader = payload.reader()
    done: list[Part] = []
    sent = 0
    with ThreadPoolExecutor(max_workers=PART_WORKERS) as pool:
        running: list[Future[tuple[int, str, bytes, int]]] = []
        number = 0
        while reader.tell() < payload.size:
            body = reader.read(min(PART_SIZE, payload.size - reader.tell()))
            if not body:
                break  # shorter than when opened: confirm() says so
            number += 1
            running.append(pool.submit(_part, client, bucket, full, upload_id, number, body))
            while len(running) >= PART_WORKERS or (running and running[0].done()):
                n, etag, digest, size = running.pop(0).result()
                done.append((n, etag, digest))
                sent += size
                if progress is not None:
                    progress(sent)
        reader.confirm()
        for future in running:
            n, etag, digest, size = future.result()
            done.append((n, etag, digest))
            sent += size
            if progress is not None:
                progress(sent)
    return sorted(done)


def _part(
    client: Any, bucket: str, full: str, upload_id: str, number: int, body: bytes
) -> tuple[int, str, bytes, int]:
    digest = hashlib.sha256(body).digest()
    answer = client.upload_part(
        Bucket=bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body,
        ChecksumSHA256=b64(digest),
    )  # fmt: skip
    return number, str(answer["ETag"]), digest, len(body)


def composite_of(parts: list[Part]) -> str:
    """The checksum S3 reports for an object made of these parts: ``BASE64-N``."""
    composite = hashlib.sha256(b"".join(digest for _, _, digest in parts)).digest()
    return f"{b64(composite)}-{len(parts)}"


def is_composite(head: dict[str, Any]) -> bool:
    """Whether S3's checksum of an object is a checksum of its parts' checksums (a multipart
    upload): said by ChecksumType, a ``-N`` suffix, or a multipart ETag."""
    checksum = str(head.get("ChecksumSHA256") or "")
    etag = str(head.get("ETag") or "").strip('"')
    return head.get("ChecksumType") == "COMPOSITE" or "-" in checksum or "-" in etag


def same(reported: str | None, expected: str | None) -> bool:
    """S3's checksum is the expected one; a composite may come with or without its ``-N``."""
    if not reported or not expected:
        return False
    return (
        reported == expected
        or reported == expected.rsplit("-", 1)[0]
        or (expected == reported.rsplit("-", 1)[0])
    )


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def hexed(checksum: str) -> str:
    try:
        return base64.b64decode(checksum).hex()
    except ValueError:
        return checksum


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
