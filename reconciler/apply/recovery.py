"""Recovery: close the jobs an interrupted run (a crash, a ``kill -9``) left pending or
processing, by what the platform really holds.

Called first by every apply (:meth:`reconciler.apply.run.Run.recover`), under the run lock. Each
stale job recorded, before its first byte, what it was about to write: the sha256 of the
master, or its rendition id, and once the rendition was made its sha256 and size. When the
rendition's sha256 did not reach the state file (it is written as soon as the file is free),
the rendition cache still knows it by the id. A job whose object is on the platform with
exactly that checksum is completed (the run had finished the transfer); any other is failed
and planned again. Partial uploads on those platforms are then removed (a local part file,
the multipart uploads this tool recorded on S3), and what the drivers could not write is
written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.apply.recorder import PlacementRecord, record_placements
from reconciler.redact import redact
from reconciler.store.db import upsert_rows, utcnow
from reconciler.store.records import EventRow, insert_events

if TYPE_CHECKING:
    from reconciler.apply.run import Run

STALE_SQL = """
SELECT j.id, j.job_code, j.job_type, j.remote_key, j.expected_checksum, j.source_version,
       j.metadata_hash, j.transform_hash, sa.asset_code, sp.platform_code, c.config_code,
       j.rendition_id, j.source_checksum, j.previous_key, pa.platform_asset_id
FROM sync_jobs j
JOIN source_assets sa ON sa.id = j.asset_id
JOIN sync_platforms sp ON sp.id = j.platform_id
LEFT JOIN sync_configurations c ON c.id = j.config_id
LEFT JOIN (SELECT source_asset_id, platform_id, max(id) AS id FROM platform_assets
           GROUP BY source_asset_id, platform_id) latest
       ON latest.source_asset_id = j.asset_id AND latest.platform_id = j.platform_id
LEFT JOIN platform_assets pa ON pa.id = latest.id
WHERE j.status IN ('pending', 'processing') ORDER BY j.id
"""
INTERRUPTED = "interrupted: the run doing it stopped before it finished"


def recover_jobs(run: Run) -> list[str]:
    """Close every stale job; returns one note per job and per cleanup."""
    from reconciler.apply.run import JOB_KEPT_WHEN_NULL, JOB_UPDATE_COLUMNS

    run.transformer.cache.sweep_work(0)  # under the run lock, every work file is a dead run's
    with run.store.reading() as con:
        if con is None:
            return []
        stale = con.execute(STALE_SQL).fetchall()
        aborting = {
            code for (code,) in con.execute(
                "SELECT DISTINCT platform_code FROM upload_sessions "
                "WHERE protocol = 's3' AND state = 'uploading'"
            ).fetchall()
        }  # fmt: skip
    if not stale and not aborting:
        return []
    now = utcnow()
    jobs: list[tuple[Any, ...]] = []
    placements: list[PlacementRecord] = []
    events: list[EventRow] = []
    notes: list[str] = []
    cache = run.transformer.cache
    # partial uploads first: what stat then finds is only what really landed (and a multipart
    # upload a failed cleanup left recorded is tried again, whatever jobs are stale)
    platforms = sorted(({row[9] for row in stale} | aborting) & set(run.manifests.platforms))
    notes += _clean_up(run, platforms, events)
    for row in stale:
        (job_id, code, job_type, key, expected, version, meta_hash, transform_hash, asset,
         platform, rule, rendition_id, source_checksum, previous_key,
         previous_id) = row  # fmt: skip
        if expected is None and rendition_id:  # made, but not recorded before the kill
            known = cache.expected(rendition_id)
            expected = known[0] if known else None
        landed = False
        reason = INTERRUPTED
        if platform in run.manifests.platforms and key:
            try:
                remote = run.driver(platform).stat(key)
            except Exception as exc:  # recovery must go on
                remote = None
                reason = redact(f"{reason}; checking the platform failed: {exc}")
            if job_type == "delete":
                landed = remote is None
            elif job_type in ("initial", "update"):
                landed = expected is not None and remote is not None and remote.checksum == expected
        if landed:
            jobs.append((job_id, "completed", 100.0, None, now, None, None, None, expected, None,
                         None))  # fmt: skip
            if job_type == "delete":
                placements.append(PlacementRecord(asset, platform, rule, "deleted"))
            else:
                # a job that had a new key (a create, a copy that moved) may have found these
                # bytes there and adopted them rather than sent them: whose they are cannot be
                # told, so the copy is never pruned until this tool writes it again
                ours = job_type == "update" and not previous_key
                placements.append(
                    PlacementRecord(
                        asset, platform, rule, "synced", version, source_checksum or expected,
                        expected, key, None, key, meta_hash, transform_hash, ours, now, now,
                        rendition_id or "",
                    )
                )  # fmt: skip
            message = f"job {code} had finished on the platform before the run stopped"
            if job_type == "update":  # what the finished upload replaced goes, as it would have
                notes += _remove_replaced(run, platform, key, previous_key, previous_id)
        else:
            jobs.append((job_id, "failed", None, None, now, reason, None, None, None, None, None))
            if job_type in ("initial", "update"):
                placements.append(PlacementRecord(asset, platform, rule, "failed"))
            message = f"job {code} was {reason}; it will be planned again"
        events.append(
            EventRow(
                "recovered",
                "success" if landed else "failed",
                message,
                {"job": code, "landed": landed},
                job_id=job_id,
            )
        )
        notes.append(message)
    with run.store.writing() as con:
        upsert_rows(
            con, "sync_jobs", "id", JOB_UPDATE_COLUMNS, jobs, keep_when_null=JOB_KEPT_WHEN_NULL
        )
        record_placements(con, placements)
        insert_events(con, events, run.provenance)
    run.finish_drivers()
    return notes


def _clean_up(run: Run, platforms: list[str], events: list[EventRow]) -> list[str]:
    """Remove the partial uploads an interrupted run left on these platforms."""
    notes = []
    for platform in platforms:
        try:
            removed = run.driver(platform).cleanup()
        except Exception as exc:
            notes.append(redact(f"cleaning up {platform} failed: {exc}"))
            continue
        if removed:
            events.append(
                EventRow("cleanup", "success", f"removed {removed} partial uploads from {platform}")
            )
            notes.append(f"removed {removed} partial uploads from {platform}")
    return notes


def _remove_replaced(
    run: Run, platform: str, key: str, previous_key: str | None, previous_id: str | None
) -> list[str]:
    """An update killed after its new copy landed, before the old one went: the old key
    (a copy that moved, such as x.mp4 to x.mp4.enc) or the platform's previous object at the
    same key (a YouTube video) is removed now; a failure is a note, never lost silently."""
    driver = run.driver(platform)
    try:
        if previous_key and previous_key != key:
            driver.delete(previous_key)
            return [f"removed {previous_key} from {platform}, which the finished update replaced"]
        if driver.replaced(key, previous_id):
            return [f"removed the object {key} on {platform} replaced by the finished update"]
    except Exception as exc:
        return [redact(f"could not remove what the finished update replaced on {platform}: {exc}")]
    return []
