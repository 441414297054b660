"""The ``s3`` driver: any S3-compatible endpoint, through boto3.

Bucket, prefix, region and endpoint come from the Platform manifest; credentials come only from
boto3's standard chain (environment, profile, instance role), never from a manifest.

Every byte sent is read once from the job's payload and hashed as it is read. A payload of up
to 8 MiB goes in one PUT, checked before it is sent and carrying its SHA-256, which S3 checks
against the body it receives. A larger one is a multipart upload whose every part carries its
own SHA-256 (S3 checks each); it is completed only when the whole payload read was the expected
bytes, and aborted otherwise, so nothing is ever committed under the key that was not what the
job meant to send. Afterwards S3's own checksum of the object (``ChecksumMode=ENABLED``) must
be the one those parts add up to.

Verification trusts only S3: a single-part object's SHA-256 is its content's; a multipart
object's composite checksum is matched with the one recorded when it was put; an object with
neither (put by someone else) is read and hashed. Metadata such as ``x-amz-meta-sha256`` is
never trusted, since anyone who can write the object can write it.

Finding an object by its key, listing the prefix for discovery and moving an object to a new
key on S3 itself (adoption) are in :mod:`reconciler.drivers.s3_adopt`.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from reconciler.drivers.base import (
    Cancelled,
    Progress,
    RemoteObject,
    TemporaryError,
    Uploaded,
)
from reconciler.drivers.s3_adopt import BucketAdoption
from reconciler.drivers.s3_parts import (
    PART_SIZE,
    PART_WORKERS,
    b64,
    composite_of,
    failure,
    hexed,
    is_composite,
    same,
    send_parts,
)
from reconciler.drivers.state import Session, SessionState
from reconciler.model import HealthStatus, Platform
from reconciler.observe.payload import NotLanded, Payload, SourceChanged
from reconciler.redact import register


class S3Driver(BucketAdoption):
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        config = platform.driver_config
        self.bucket: str = config["bucket"]
        self.prefix: str = config.get("prefix", "")
        self.endpoint: str | None = config.get("endpoint_url")
        session = boto3.session.Session()
        credentials = session.get_credentials()  # the standard chain; never a manifest
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            register(frozen.secret_key)
            register(frozen.token)
        self.client = session.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=config.get("region"),
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=PART_WORKERS + 4,
            ),
        )

    def full_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def url(self, key: str) -> str:
        path = quote(self.full_key(key))
        if self.endpoint:
            return f"{self.endpoint.rstrip('/')}/{self.bucket}/{path}"
        return f"https://{self.bucket}.s3.amazonaws.com/{path}"

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.full_key(key)}"

    # -- upload ----------------------------------------------------------------------------
    def upload(
        self, payload: Payload, key: str, metadata: dict[str, Any], progress: Progress | None = None
    ) -> Uploaded:
        extra = {
            "Metadata": {"asset": _ascii(metadata.get("code", ""))},
            "ContentType": metadata.get("mime_type") or "application/octet-stream",
        }
        doing = f"uploading {self._where(key)}"
        try:
            if payload.size <= PART_SIZE:
                sent = self._put(payload, key, extra, progress)
            else:
                sent = self._multipart(payload, key, extra, progress)
            head = self.client.head_object(
                Bucket=self.bucket, Key=self.full_key(key), ChecksumMode="ENABLED"
            )
        except (SourceChanged, Cancelled):
            raise
        except Exception as exc:
            raise failure(exc, doing) from None
        landed = head.get("ChecksumSHA256")
        if landed is None:  # a store that reports no checksums: read back what it holds
            read = self._read_digest(self.full_key(key))
            if read != payload.expected or head.get("ContentLength") != payload.size:
                raise NotLanded(f"{doing}: what the store holds now is not what was sent", read)
        elif not same(landed, sent) or head.get("ContentLength") != payload.size:
            raise NotLanded(
                f"{doing}: S3 reports checksum {landed} and {head.get('ContentLength')} bytes "
                f"for what was sent as {sent} and {payload.size} bytes",
                landed if landed is None or is_composite(head) else hexed(landed),
            )
        self.keep(
            Session(key, "s3", SessionState.DONE, payload.expected, payload.size,
                    remote_id=head.get("ETag"), remote_url=self.url(key), remote_checksum=landed)
        )  # fmt: skip
        return Uploaded(
            platform_asset_id=self._where(key),
            url=self.url(key),
            remote_checksum=payload.expected,  # S3 checked every part against what was read
            details={"etag": head.get("ETag"), "s3_checksum": landed},
        )

    def _put(
        self, payload: Payload, key: str, extra: dict[str, Any], progress: Progress | None
    ) -> str:
        """One PUT of a small payload, read whole and checked before a byte goes; S3 checks
        the body against its SHA-256. Returns that checksum (base64)."""
        reader = payload.reader()
        body = reader.read(payload.size)
        reader.confirm()
        checksum = b64(bytes.fromhex(reader.hexdigest))
        self.client.put_object(
            Bucket=self.bucket, Key=self.full_key(key), Body=body, ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
            **extra,
        )  # fmt: skip
        if progress is not None:
            progress(len(body))
        return checksum

    def _multipart(
        self, payload: Payload, key: str, extra: dict[str, Any], progress: Progress | None
    ) -> str:
        """A multipart upload: each part read once, hashed, and sent with its SHA-256 (which S3
        checks); completed only when the whole is the expected bytes, else aborted. The upload
        id is recorded before the first part, so recovery can abort exactly it. Returns the
        composite checksum S3 must report."""
        full = self.full_key(key)
        previous = self.kept(key)
        if (
            previous is not None
            and previous.state == SessionState.UPLOADING
            and previous.session_url
        ):
            self._abort_recorded(previous)  # an earlier one of ours: never left behind
            previous = None
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=full, ChecksumAlgorithm="SHA256", **extra
        )["UploadId"]
        started = Session(
            key, "s3", SessionState.UPLOADING, payload.expected, payload.size, upload_id
        )
        if self.state is not None and not self.state.record_before_sending(started):
            self._abort(full, upload_id)  # recovery could not know it: never leave it
            raise TemporaryError(
                f"the state file stayed busy, so the upload of {key} could not be recorded "
                "before its first part; it waits"
            )
        try:
            parts = send_parts(self.client, self.bucket, full, upload_id, payload, progress)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id,
                MultipartUpload={"Parts": [
                    {"PartNumber": n, "ETag": etag, "ChecksumSHA256": b64(digest)}
                    for n, etag, digest in parts
                ]},
            )  # fmt: skip
        except BaseException:
            self._abort(full, upload_id)
            if previous is not None and previous.state == SessionState.DONE:
                self.keep(previous)  # the object there is still the one it describes
            else:
                self.forget(key)
            raise
        return composite_of(parts)

    def _abort(self, full: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):  # best effort: recovery aborts it otherwise
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)

    # -- the rest --------------------------------------------------------------------------
    def stat(self, key: str, size: int | None = None) -> RemoteObject | None:
        """What S3 holds at ``key``, by S3's own checksum, never by metadata anyone can write:
        a single-part object's SHA-256 is the content's; a multipart object's composite
        checksum is matched against the one recorded when this tool put it; anything else
        (an object without a checksum, or one this tool does not know) is read and hashed."""
        full = self.full_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise failure(exc, f"reading {self._where(key)}") from None
        except Exception as exc:
            raise failure(exc, f"reading {self._where(key)}") from None
        expected_size = size
        size, etag, checksum = (
            head.get("ContentLength"),
            head.get("ETag"),
            head.get("ChecksumSHA256"),
        )
        details = {"etag": etag, "s3_checksum": checksum}
        if checksum and not is_composite(head):
            return RemoteObject(hexed(checksum), size, details)
        known = self.kept(key)
        if (
            checksum
            and known is not None
            and known.state == SessionState.DONE
            and known.file_size == size
            and same(checksum, known.remote_checksum)
        ):
            return RemoteObject(known.file_sha256, size, details)
        if expected_size is not None and size != expected_size:
            return RemoteObject(None, size, details)  # other bytes: no need to read them
        digest = self._read_digest(full)
        if checksum and (known is None or known.state == SessionState.DONE):  # (an upload in flight
            # stays recorded: recovery aborts it) a composite checksum is content-derived:
            # remember what it stands for
            self.keep(Session(key, "s3", SessionState.DONE, digest, int(size or 0), remote_id=etag,
                              remote_url=self.url(key), remote_checksum=checksum))  # fmt: skip
        return RemoteObject(digest, size, details)

    def _read_digest(self, full: str) -> str:
        digest = hashlib.sha256()
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=full)["Body"]
            for block in body.iter_chunks(1024 * 1024):
                digest.update(block)
        except Exception as exc:
            raise failure(exc, f"reading s3://{self.bucket}/{full}") from None
        return digest.hexdigest()

    def delete(self, key: str) -> None:
        full = self.full_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise failure(exc, f"deleting s3://{self.bucket}/{full}") from None
        self.forget(key)

    def update_metadata(self, key: str, metadata: dict[str, Any]) -> None:
        full = self.full_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
            kept = dict(head.get("Metadata", {}))
            kept["asset"] = _ascii(str(metadata.get("code") or kept.get("asset") or ""))
            self.client.copy_object(
                Bucket=self.bucket,
                Key=full,
                CopySource={"Bucket": self.bucket, "Key": full},
                CopySourceIfMatch=head["ETag"],
                Metadata=kept,
                MetadataDirective="REPLACE",
                ContentType=metadata.get("mime_type") or head.get("ContentType"),
                ChecksumAlgorithm="SHA256",  # the copy gets S3's SHA-256 of its content
            )
        except Exception as exc:
            raise failure(exc, f"updating the metadata of s3://{self.bucket}/{full}") from None

    def health_check(self) -> tuple[str, str]:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            return HealthStatus.DOWN, str(failure(exc, f"bucket {self.bucket}"))
        return HealthStatus.HEALTHY, f"bucket {self.bucket} answers"

    def cleanup(self) -> int:
        """Abort the multipart uploads this tool started and recorded, and only those: other
        writers' uploads under the same bucket or prefix are not ours to touch."""
        if self.state is None:
            return 0
        mine = [s for s in self.state.sessions().values() if s.state == SessionState.UPLOADING]
        for session in mine:
            self._abort_recorded(session)
        return len(mine)

    def _abort_recorded(self, session: Session) -> None:
        """Abort a multipart upload this tool recorded, and only then forget it: one that
        cannot be aborted now stays recorded, for the next cleanup (temporary failure)."""
        assert session.session_url is not None
        full = self.full_key(session.key)
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=session.session_url
            )
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) not in ("NoSuchUpload", "404"):
                raise failure(exc, f"aborting an upload of ours to bucket {self.bucket}") from None
        except Exception as exc:
            raise failure(exc, f"aborting an upload of ours to bucket {self.bucket}") from None
        self.forget(session.key)

    def keep(self, session: Session, patience: float = 0.0) -> None:
        if self.state is not None:
            self.state.save(session, patience)

    def forget(self, key: str) -> None:
        if self.state is not None:
            self.state.forget(key)


def _ascii(text: str) -> str:
    """S3 user metadata must be US-ASCII."""
    return text.encode("ascii", "backslashreplace").decode("ascii")
