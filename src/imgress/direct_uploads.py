"""Direct uploads, part of the service layer: reserve slots, receive puts, commit a batch.

Reserve makes no network call (a signed URL per slot). A commit verifies every upload,
publishes the accepted ones and writes all their records with ImageService.store_parts
(ONE INSERT), so 2,000 photos cost a handful of statements.

On an object store the client PUTs to a presigned URL under `staging/<upload_id>`, so
the server sees the bytes only at commit: it streams each staged object down once
(type sniffed from the first chunk before the rest is read, sha256 while it streams,
the header checked by the same `inspect_file` as every other path) and publishes it with
a server-side copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from imgress.db.upload_repository import UploadRepository
from imgress.errors import (
    BadRequest,
    ImgressError,
    NotFound,
    PayloadTooLarge,
    RejectedPart,
    TokenUsed,
)
from imgress.limits import SNIFF_BYTES, require_image_type, sanitize_filename
from imgress.models import Upload, new_id, rfc3339, utcnow
from imgress.service import ImageService, PartResult, StagedPart
from imgress.spool import SpoolFile
from imgress.tokens import Claims, Signer

log = structlog.get_logger("imgress.uploads")
_CHUNK = 1024 * 1024


def staging_key(upload_id: str) -> str:
    return f"staging/{upload_id}"


class NotUploadedYet(RejectedPart):
    """The staged object is not there (yet): the slot stays open for its PUT."""


@dataclass(frozen=True, slots=True)
class DeclaredFile:
    filename: str
    size: int
    content_type: str
    sha256: str | None = None


class DirectUploads:
    def __init__(self, images: ImageService, repo: UploadRepository, signer: Signer,
                 ttl_seconds: int, max_batch: int):
        self.images, self.repo, self.signer = images, repo, signer
        self.ttl, self.max_batch = ttl_seconds, max_batch
        # Presigning is local signing, so asking the backend once is free.
        self.presigned = images.storage.presign_put("staging/probe", 1, "image/jpeg", 60) \
            is not None
        self._fetch = ThreadPoolExecutor(16, thread_name_prefix="imgress-fetch") \
            if self.presigned else None

    def _staged_path(self, upload_id: str) -> Path:
        return self.images.storage.spool_dir() / f"up-{upload_id}"

    def _check_batch(self, count: int) -> None:
        if count > self.max_batch:
            raise PayloadTooLarge(f"more than {self.max_batch} uploads in one request",
                                  code="too_many_uploads", limit=self.max_batch)
        if count == 0:
            raise BadRequest("the batch is empty", code="empty_batch")

    # -- reserve --------------------------------------------------------------------

    def reserve(self, owner: str, files: Sequence[DeclaredFile], base_url: str
                ) -> list[dict[str, Any]]:
        self._check_batch(len(files))
        limits = self.images.limits
        expires = utcnow().replace(microsecond=0) + timedelta(seconds=self.ttl)
        slots = []
        for f in files:
            limits.check_part_size(f.size)
            slots.append(Upload(
                id=new_id("upl"), owner=owner,
                filename=sanitize_filename(f.filename, limits.max_filename_chars),
                size=f.size, content_type=f.content_type, sha256=f.sha256, expires_at=expires,
            ))
        self.repo.reserve(slots)
        out = []
        for slot in slots:
            presigned = self.images.storage.presign_put(
                staging_key(slot.id), slot.size, slot.content_type, self.ttl)
            if presigned is None:
                token = self.signer.sign(self._claims(slot, int(expires.timestamp())))
                presigned = (f"{base_url.rstrip('/')}/v1/uploads/{slot.id}?token={token}",
                             {"Content-Type": slot.content_type})
            url, headers = presigned
            out.append({"upload_id": slot.id, "method": "PUT", "url": url,
                        "headers": headers, "expires_at": rfc3339(expires)})
        return out

    @staticmethod
    def _claims(slot: Upload, expires: int = 0) -> Claims:
        return Claims(slot.id, slot.size, slot.content_type, slot.sha256, expires)

    # -- put ------------------------------------------------------------------------

    def begin_put(self, upload_id: str, token: str, content_type: str | None
                  ) -> tuple[Upload, SpoolFile]:
        """Check the token and take it (it works once); the caller streams into the spool."""
        slot = self.repo.get(upload_id)
        if slot is None:
            raise NotFound("no such upload", code="upload_not_found")
        self.signer.verify(token, self._claims(slot))
        if (content_type or "").split(";")[0].strip().lower() != slot.content_type.lower():
            raise BadRequest(f"send Content-Type: {slot.content_type} as reserved",
                             code="content_type_mismatch")
        if not self.repo.transition(upload_id, "reserved", "receiving"):
            raise TokenUsed("this upload token was already used")
        return slot, SpoolFile(self.images.storage.spool_dir(), slot.size)

    def finish_put(self, slot: Upload, spool: SpoolFile) -> dict[str, Any]:
        try:
            if spool.overflowed:
                raise PayloadTooLarge(f"more bytes than the {slot.size} declared",
                                      code="size_exceeded", limit=slot.size)
            spool.close()  # waits for the writer: size and hash are final after this
            if spool.size != slot.size:
                raise BadRequest(f"received {spool.size} bytes, {slot.size} were declared",
                                 code="size_mismatch")
            if slot.sha256 and spool.sha256 != slot.sha256:
                raise BadRequest("the bytes do not match the declared sha256",
                                 code="sha256_mismatch")
            staged_path = self._staged_path(slot.id)
            spool.path.replace(staged_path)
        except BaseException:
            self.abort_put(slot, spool)
            raise
        found: dict[str, Any] = {}
        try:
            # Inspected now, while the bytes are warm: the commit then needs no decoder.
            part = self.images.inspect_file(slot.filename, staged_path, spool.head,
                                            spool.tail, spool.sha256, spool.size)
            found = {"sniffed_type": part.content_type, "width": part.width,
                     "height": part.height, "exif_orientation": part.exif_orientation}
        except ImgressError as exc:
            found = {"outcome": f"rejected:{exc.code}"}
        self.repo.transition(slot.id, "receiving", "received", received_size=spool.size,
                             received_sha256=spool.sha256, **found)
        return {"upload_id": slot.id, "size": spool.size, "sha256": spool.sha256}

    def abort_put(self, slot: Upload, spool: SpoolFile) -> None:
        """A failed put leaves the slot usable for a retry with the same token."""
        spool.discard()
        self.repo.transition(slot.id, "receiving", "reserved")

    # -- commit ---------------------------------------------------------------------

    def commit(self, owner: str, upload_ids: Sequence[str], request_id: str | None
               ) -> tuple[str, list[dict[str, Any]]]:
        self._check_batch(len(upload_ids))
        # Staged objects are claimed while the slot is open (or just closed: the store
        # refused late PUTs), never once `cleanup` may be deleting them.
        claimed = (self.repo.claim_for_commit(owner, upload_ids, "reserved",
                                              utcnow() - timedelta(seconds=60))
                   if self.presigned else self.repo.claim_for_commit(owner, upload_ids))
        known = self.repo.get_many(upload_ids)
        job_id = self.images.open_job(owner, request_id, kind="commit")
        answers: dict[str, dict[str, Any]] = {}
        staged: list[tuple[str, StagedPart]] = []
        settled: list[tuple[str, str, str | None]] = []
        unique = list(dict.fromkeys(upload_ids))
        verify = self._fetch_staged if self.presigned else self._verify
        pool = self._fetch.map if self._fetch else map
        checked = pool(lambda uid: _attempt(verify, known[uid]),
                       [uid for uid in unique if uid in claimed])
        verdicts = dict(zip([uid for uid in unique if uid in claimed], checked, strict=True))
        reopened = []
        for uid in unique:
            verdict = verdicts.get(uid)
            if verdict is None:
                answers[uid] = self._answer_unclaimed(owner, uid, known.get(uid))
            elif isinstance(verdict, StagedPart):
                staged.append((uid, verdict))
            elif isinstance(verdict, NotUploadedYet):
                reopened.append(uid)
                answers[uid] = self._rejected(uid, known[uid].filename, verdict)
            else:
                self._staged_path(uid).unlink(missing_ok=True)
                if self.presigned:
                    self.images.storage.delete(staging_key(uid))
                settled.append((uid, f"rejected:{verdict.code}", None))
                answers[uid] = self._rejected(uid, known[uid].filename, verdict)
        self.repo.reopen(reopened)
        if staged:
            results = self.images.store_parts(
                owner, job_id, [s for _, s in staged], list(range(len(staged))), request_id)
            for (uid, _), result in zip(staged, results, strict=True):
                assert result.image is not None
                settled.append((uid, result.status, result.image.id))
                answers[uid] = {"upload_id": uid, **result.to_api()}
        self.repo.settle(settled)
        return job_id, [answers[uid] for uid in upload_ids]

    def _verify(self, slot: Upload) -> StagedPart:
        """Everything was inspected at put time; check that it all still holds."""
        path = self._staged_path(slot.id)
        if slot.received_size != slot.size or not path.exists():
            raise RejectedPart("the uploaded bytes are missing", code="not_uploaded")
        if slot.sha256 and slot.received_sha256 != slot.sha256:
            raise RejectedPart("the bytes do not match the declared sha256",
                               code="sha256_mismatch")
        if slot.outcome and slot.outcome.startswith("rejected:"):
            raise RejectedPart("the uploaded file is not an acceptable image",
                               code=slot.outcome.removeprefix("rejected:"))
        assert slot.received_sha256 and slot.sniffed_type and slot.width and slot.height
        return StagedPart(slot.filename, path, slot.received_sha256, slot.size,
                          slot.sniffed_type, slot.width, slot.height, slot.exif_orientation)

    def _fetch_staged(self, slot: Upload) -> StagedPart:
        """Check a staged object by the same rules as a PUT to this server, reading it
        once; the spooled copy is only for the header check and is dropped after it."""
        storage, key = self.images.storage, staging_key(slot.id)
        try:
            size = storage.stat(key).size
        except FileNotFoundError:
            raise NotUploadedYet("nothing was uploaded to this slot (yet)",
                                 code="not_uploaded") from None
        if size != slot.size:
            raise RejectedPart(f"received {size} bytes, {slot.size} were declared",
                               code="size_mismatch")
        spool = SpoolFile(storage.spool_dir(), slot.size)
        try:
            with storage.open(key) as body:
                while chunk := body.read(_CHUNK):
                    if not spool.write(chunk):
                        break
                    if len(spool.head) >= SNIFF_BYTES or spool.size == slot.size:
                        require_image_type(spool.head)  # before the rest is read
            if spool.overflowed or spool.size != slot.size:
                raise RejectedPart("the staged object changed while it was read",
                                   code="size_mismatch")
            spool.close()
            if slot.sha256 and spool.sha256 != slot.sha256:
                raise RejectedPart("the bytes do not match the declared sha256",
                                   code="sha256_mismatch")
            part = self.images.inspect_file(slot.filename, spool.path, spool.head,
                                            spool.tail, spool.sha256, spool.size)
        finally:
            spool.discard()
        part.path = key  # published from the store itself: a server-side copy
        return part

    def _answer_unclaimed(self, owner: str, uid: str, slot: Upload | None) -> dict[str, Any]:
        if slot is None or slot.owner != owner:
            return self._rejected(uid, None, RejectedPart(
                "no such upload", code="upload_not_found"))
        if slot.status == "committed" and slot.image_id:
            image = self.images.repo.get_image(slot.image_id)
            if image is not None:
                return {"upload_id": uid,
                        **PartResult(slot.filename, slot.outcome or "created", image).to_api()}
        if slot.status == "rejected" and slot.outcome:
            code = slot.outcome.removeprefix("rejected:")
            return self._rejected(uid, slot.filename, RejectedPart(
                "this upload was refused at an earlier commit", code=code))
        if slot.status == "committing":
            return self._rejected(uid, slot.filename, RejectedPart(
                "another commit of this upload is in progress", code="commit_in_progress"))
        if slot.expires_at.replace(tzinfo=None) < utcnow().replace(tzinfo=None):
            return self._rejected(uid, slot.filename, RejectedPart(
                "the upload slot expired before its bytes arrived", code="upload_expired"))
        return self._rejected(uid, slot.filename, RejectedPart(
            "nothing was uploaded to this slot (yet)", code="not_uploaded"))

    @staticmethod
    def _rejected(uid: str, filename: str | None, exc: ImgressError) -> dict[str, Any]:
        return {"upload_id": uid, **PartResult.rejected(filename or "", exc).to_api()}

    # -- clean-up -------------------------------------------------------------------

    def cleanup(self, grace_seconds: int = 300, stuck_seconds: int = 3600) -> int:
        """Remove expired, never-committed uploads (and, a day on, settled slot rows).
        A slot still `committing` an hour after it expired was claimed by a commit that
        died (a killed process): no live commit takes that long, so it goes too; the
        images it published, if any, stay (their content hash dedups a re-upload)."""
        now = utcnow()
        stale = self.repo.expired(now - timedelta(seconds=grace_seconds),
                                  ("reserved", "receiving", "received"))
        stale += self.repo.expired(now - timedelta(seconds=stuck_seconds), ("committing",))
        stale += self.repo.expired(now - timedelta(days=1), ("committed", "rejected"))
        for slot in stale:
            self._staged_path(slot.id).unlink(missing_ok=True)
            if self.presigned and slot.status in ("reserved", "committing"):
                self.images.storage.delete(staging_key(slot.id))
        self.repo.delete([s.id for s in stale])
        if stale:
            log.info("uploads_cleaned", count=len(stale))
        return len(stale)


def _attempt(verify: Any, slot: Upload) -> StagedPart | ImgressError:
    try:
        result: StagedPart = verify(slot)
        return result
    except ImgressError as exc:
        return exc
