"""Adopting what a bucket already holds: finding an object by its key, listing every object
under the platform's prefix for discovery, and moving an object to a new key on S3 itself.

:class:`BucketAdoption` is the part of :class:`~reconciler.drivers.s3.S3Driver` that adoption
calls (an import finds a key, discovery lists the prefix, a renamed master's copy is moved).
Checksums come from the driver's ``stat``, that is from S3 (its own SHA-256, a composite
matched with the one recorded when the object was put, or the object read and hashed), never
from metadata anyone can write.

A move never sends the object's bytes: S3 copies it (``CopyObject`` up to 5 GiB, a multipart
copy of ranges beyond, in the source's own part size when it has one, so that its composite
checksum stays the same), asking for SHA-256 and only from the version that was looked at
(``CopySourceIfMatch``). An object at the new key is never replaced: the key is looked at
first, and the copy asks S3 to refuse one made since (``If-None-Match: *``, on stores that
honour it). The old key is deleted only while it still holds the version copied
(``If-Match``), and what the driver recorded for it (a multipart upload's composite checksum)
moves to the new key, so the copy is still recognised without reading it.
"""

from __future__ import annotations

import contextlib
import math
from abc import abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from reconciler.drivers.base import Driver, DriverError, Found, PermanentError, TemporaryError
from reconciler.drivers.s3_parts import PART_SIZE, PART_WORKERS, failure, is_composite, same
from reconciler.drivers.state import Session, SessionState

COPY_LIMIT = 5 * 1024**3  # the most CopyObject copies in one request
MAX_PARTS = 10_000
MIB = 1024 * 1024
MISSING = {"404", "NoSuchKey", "NotFound"}
UNSUPPORTED = {"NotImplemented", "501", "InvalidArgument"}  # a store without the condition


class BucketAdoption(Driver):
    """Find, discover and move in a bucket under a prefix (mixed into the s3 driver, which
    gives its client, bucket, prefix, keys and recorded sessions)."""

    keys_are_paths = True
    LIST_PAGE = 1000  # keys asked for per listing request
    client: Any
    bucket: str
    prefix: str

    @abstractmethod
    def full_key(self, key: str) -> str:
        """The object's name in the bucket: the prefix, then the key."""

    @abstractmethod
    def url(self, key: str) -> str:
        """The object's URL."""

    @abstractmethod
    def keep(self, session: Session, patience: float = 0.0) -> None:
        """Record a session for its key."""

    @abstractmethod
    def forget(self, key: str) -> None:
        """Drop what is recorded for ``key``."""

    def recorded_id(self, found: Found) -> str:
        return f"s3://{self.bucket}/{self.full_key(found.key or found.remote_id)}"  # as uploads

    def id_problem(self, remote_id: str) -> str | None:
        try:
            self._key_of(remote_id)
        except PermanentError as exc:
            return str(exc)
        return None

    def find(self, remote_id: str) -> Found | None:
        """The object at the key ``remote_id`` (relative to the prefix), or given as
        ``s3://bucket/prefix+key`` (the id an upload records); None when there is none."""
        key = self._key_of(remote_id)
        found = self.stat(key)
        if found is None:
            return None
        return Found(key, key, found.checksum, found.size, self.url(key))

    def _key_of(self, remote_id: str) -> str:
        key = remote_id
        if remote_id.startswith("s3://"):
            bucket, _, full = remote_id.removeprefix("s3://").partition("/")
            if bucket != self.bucket or not full.startswith(self.prefix):
                raise PermanentError(
                    f"{remote_id} is not under s3://{self.bucket}/{self.prefix}, where "
                    f"{self.platform.code} keeps its objects"
                )
            key = full[len(self.prefix) :]
        if not key or key.endswith("/"):
            raise PermanentError(f"{remote_id} names no object on {self.platform.code}")
        return key

    def discover(self) -> Iterator[Found]:
        """Every object under the prefix, in key order (folder markers, keys ending in '/',
        left out), with the checksum ``stat`` finds for it."""
        for full in self._listed():
            key = full[len(self.prefix) :]
            found = self.stat(key)
            if found is not None:  # (deleted since it was listed: not there)
                yield Found(key, key, found.checksum, found.size, self.url(key))

    def _listed(self) -> Iterator[str]:
        """The names of the objects under the prefix, page by page."""
        doing = f"listing s3://{self.bucket}/{self.prefix}"
        ask: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            try:
                page = self.client.list_objects_v2(MaxKeys=self.LIST_PAGE, **ask)
            except Exception as exc:
                raise failure(exc, doing) from None
            for item in page.get("Contents") or []:
                full = str(item["Key"])
                if full.startswith(self.prefix) and full != self.prefix and not full.endswith("/"):
                    yield full
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            ask["ContinuationToken"] = token

    def move(self, old_key: str, new_key: str) -> None:
        """Copy the object at ``old_key`` to ``new_key`` on S3 and delete the old key; never
        replaces an object at ``new_key``, never sends the bytes."""
        old, new = self.full_key(old_key), self.full_key(new_key)
        here, there = f"s3://{self.bucket}/{old}", f"s3://{self.bucket}/{new}"
        if old == new:
            raise PermanentError(f"{here} on {self.platform.code} is already at {new_key}")
        doing = f"moving {here} to {there} on {self.platform.code}"
        unfinished = self.kept(new_key)
        if unfinished is not None and unfinished.state == SessionState.UPLOADING:
            raise PermanentError(f"{doing}: an upload to {there} is unfinished; nothing was moved")
        try:
            head = self._head(old)
            if head is None:
                raise PermanentError(f"{here} is not on {self.platform.code}: nothing to move")
            if self._head(new) is not None:
                raise self._taken(there)
            size = int(head.get("ContentLength") or 0)
            if size <= COPY_LIMIT:
                self._copy_whole(old, new, head, there)
            else:
                self._copy_parts(old_key, new_key, head, size)
            landed = self._head(new)
        except DriverError:
            raise
        except Exception as exc:
            raise failure(exc, doing) from None
        if landed is None or landed.get("ContentLength") != size:
            raise PermanentError(f"{doing}: the copy is not whole; {here} was left as it is")
        self._carry(old_key, new_key, head, landed)
        self._remove_source(old, str(head.get("ETag")), doing)
        if (left := self.kept(old_key)) is None or left.state != SessionState.UPLOADING:
            self.forget(old_key)  # (an unfinished upload there stays recorded, to be aborted)

    def _head(self, full: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.bucket, Key=full, ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            if _code(exc) in MISSING:
                return None
            raise
        return head

    def _taken(self, there: str) -> PermanentError:
        return PermanentError(
            f"{there} already holds an object on {self.platform.code}; it was left as it is "
            "and nothing was moved"
        )

    def _refused(self, new: str, there: str) -> PermanentError:
        """A copy S3 refused on a condition: the new key was taken meanwhile, or the source
        changed."""
        if self._head(new) is not None:
            return self._taken(there)
        return PermanentError(
            f"the object to be moved to {there} on {self.platform.code} changed while it was "
            "copied; nothing was moved"
        )

    def _copy_whole(self, old: str, new: str, head: dict[str, Any], there: str) -> None:
        """One CopyObject of the version looked at, with S3's SHA-256 of the copy."""
        ask = {
            "Bucket": self.bucket, "Key": new, "CopySource": {"Bucket": self.bucket, "Key": old},
            "CopySourceIfMatch": head["ETag"], "ChecksumAlgorithm": "SHA256",
            "MetadataDirective": "COPY",
        }  # fmt: skip
        try:
            self.client.copy_object(IfNoneMatch="*", **ask)
        except ClientError as exc:
            if _code(exc) in UNSUPPORTED:  # the key was looked at just before
                self.client.copy_object(**ask)
            elif _code(exc) in ("PreconditionFailed", "412"):
                raise self._refused(new, there) from None
            else:
                raise

    def _copy_parts(self, old_key: str, new_key: str, head: dict[str, Any], size: int) -> None:
        """A multipart copy of ranges of the version looked at, completed only if nothing is
        at the new key by then; aborted on any failure. The upload is recorded before its
        first part, as an upload's is, so that recovery aborts it after a kill."""
        old, new = self.full_key(old_key), self.full_key(new_key)
        there, etag = f"s3://{self.bucket}/{new}", head["ETag"]
        part = self._part_size(old, size)
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=new, ChecksumAlgorithm="SHA256",
            ContentType=head.get("ContentType") or "application/octet-stream",
            Metadata=head.get("Metadata") or {},
        )["UploadId"]  # fmt: skip
        known = self.kept(old_key)
        started = Session(new_key, "s3", SessionState.UPLOADING, known.file_sha256 if known else "",
                          size, upload_id)  # fmt: skip
        if self.state is not None and not self.state.record_before_sending(started):
            self._abort(new, upload_id)
            self.forget(new_key)
            raise TemporaryError(
                f"the state file stayed busy, so the copy to {there} could not be recorded "
                "before its first part; it waits"
            )

        def copy(number: int) -> dict[str, Any]:
            start = (number - 1) * part
            done = self.client.upload_part_copy(
                Bucket=self.bucket, Key=new, UploadId=upload_id, PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": old}, CopySourceIfMatch=etag,
                CopySourceRange=f"bytes={start}-{min(start + part, size) - 1}",
            )["CopyPartResult"]  # fmt: skip
            entry = {"PartNumber": number, "ETag": done["ETag"]}
            if done.get("ChecksumSHA256"):
                entry["ChecksumSHA256"] = done["ChecksumSHA256"]
            return entry

        try:
            with ThreadPoolExecutor(max_workers=PART_WORKERS) as pool:
                parts = list(pool.map(copy, range(1, math.ceil(size / part) + 1)))
            ask = {"Bucket": self.bucket, "Key": new, "UploadId": upload_id,
                   "MultipartUpload": {"Parts": parts}}  # fmt: skip
            try:
                self.client.complete_multipart_upload(IfNoneMatch="*", **ask)
            except ClientError as exc:
                if _code(exc) not in UNSUPPORTED:
                    raise
                self.client.complete_multipart_upload(**ask)  # the key was looked at before
        except BaseException as exc:
            self._abort(new, upload_id)
            self.forget(new_key)
            if isinstance(exc, ClientError) and _code(exc) in ("PreconditionFailed", "412"):
                raise self._refused(new, there) from None
            raise
        self.forget(new_key)  # made: what describes it now is for _carry to say

    def _abort(self, full: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):  # best effort: what it left is no object
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)

    def _part_size(self, full: str, size: int) -> int:
        """The source's own part size when its parts are of one size (as this driver and
        most tools make them): the copy's composite checksum is then the source's. Else the
        driver's part size, larger when the object needs more than S3's 10,000 parts. (The
        parts are copied only from the version looked at; a size from another one costs only
        the composite's match, checked when the record moves.)"""
        first = self.client.head_object(Bucket=self.bucket, Key=full, PartNumber=1)
        count, length = first.get("PartsCount"), first.get("ContentLength")
        if count and count > 1 and length and math.ceil(size / length) == count:
            return int(length)
        return max(PART_SIZE, math.ceil(size / MAX_PARTS / MIB) * MIB)

    def _carry(
        self, old_key: str, new_key: str, head: dict[str, Any], landed: dict[str, Any]
    ) -> None:
        """What was recorded for the object at ``old_key`` (the sha256 its composite
        checksum stands for) now describes the copy at ``new_key``, when it described the
        version that was copied and the copy's checksum is the same composite (or S3's own
        SHA-256 of the content, which needs no record)."""
        known = self.kept(old_key)
        checksum, copied = head.get("ChecksumSHA256"), landed.get("ChecksumSHA256")
        if (
            not known
            or known.state != SessionState.DONE
            or known.file_size != head.get("ContentLength")
            or not same(checksum, known.remote_checksum)
            or (is_composite(landed) and not same(copied, known.remote_checksum))
        ):
            self.forget(new_key)  # stat reads and hashes the copy when it must
            return
        self.keep(
            known.moved(key=new_key, remote_id=landed.get("ETag"), remote_url=self.url(new_key),
                        remote_checksum=copied)
        )  # fmt: skip

    def _remove_source(self, old: str, etag: str, doing: str) -> None:
        """Delete the old key while it holds the version copied; one written there since is
        someone else's and stays."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=old, IfMatch=etag)
        except ClientError as exc:
            code = _code(exc)
            if code in ("PreconditionFailed", "412") or code in MISSING:
                return
            if code not in UNSUPPORTED:
                raise failure(exc, f"{doing}: the copy is made, but the old key stays") from None
            try:
                self.client.delete_object(Bucket=self.bucket, Key=old)
            except Exception as again:
                raise failure(again, f"{doing}: the copy is made, but the old key stays") from None
        except Exception as exc:
            raise failure(exc, f"{doing}: the copy is made, but the old key stays") from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
