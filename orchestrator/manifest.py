"""A finished batch's manifest: one row per try-on (garment x person), as JSON and as CSV, beside the results.

Each row says which garment on which person, the garment's category (and whether and how surely it was
inferred), where the result is (the key below the tenant's prefix, as /v1/objects names it, and its s3:// URI),
how the job ended and why it failed, which backend each step ran and how long the job ran. A batch that made no
job (an incoming garment that is not a photo, no model photos) gets one failed row per garment with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from typing import Any

from orchestrator.batches import Batch
from orchestrator.jobs import FAILED, JOB_STATUSES, SUCCEEDED, Job
from orchestrator.pipeline import Storage
from orchestrator.tenants import tenant_prefix

FIELDS = (
    "garment",
    "person",
    "category",
    "category_inferred",
    "category_confidence",
    "status",
    "error",
    "result_key",
    "result_uri",
    "backends",
    "seconds",
    "job_id",
)


def manifest_rows(batch: Batch, jobs: list[Job], bucket: str) -> list[dict[str, Any]]:
    """The rows of the manifest, garment by garment, person by person."""
    if batch.error:
        return [
            _row(garment=g.name, person="", category=g.category, status=FAILED, error=batch.error)
            for g in batch.garments
        ]
    prefix = tenant_prefix(batch.tenant_id)
    rows = []
    for job in jobs:
        garment = batch.garments[job.batch_garment or 0]
        person = batch.people[job.batch_person or 0]
        result = job.result_key if job.status == SUCCEEDED else None
        seconds = round(job.finished_at - job.started_at, 3) if job.finished_at and job.started_at else None
        rows.append(
            _row(
                garment=garment.name,
                person=person.name,
                category=job.category or None,
                category_inferred=job.category_inferred,
                category_confidence=job.category_confidence,
                status=job.status,
                error=job.error,
                result_key=result[len(prefix) :] if result else None,
                result_uri=f"s3://{bucket}/{result}" if result else None,
                backends={step: s.backend["name"] for step, s in job.stages.items() if s.backend},
                seconds=seconds,
                job_id=job.id,
            )
        )
    return rows


def _row(**values: Any) -> dict[str, Any]:
    return {"category_inferred": False, **dict.fromkeys(FIELDS), **values}


def manifest_json(batch: Batch, rows: list[dict[str, Any]]) -> bytes:
    counts = dict.fromkeys(JOB_STATUSES, 0)
    for row in rows:
        counts[row["status"]] += 1
    document = {
        "batch": batch.id,
        "tenant": batch.tenant_id,
        "source": batch.source,
        "created_at": _iso(batch.created_at),
        "finished_at": _iso(time.time()),
        "error": batch.error,
        "counts": counts,
        "rows": rows,
    }
    return json.dumps(document, indent=2).encode()


def manifest_csv(rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV with a header; backends as `step=name` pairs joined by `;`, null as an empty cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {k: "" if v is None else v for k, v in row.items()}
        cells["backends"] = ";".join(f"{step}={name}" for step, name in (row["backends"] or {}).items())
        cells["category_inferred"] = "true" if row["category_inferred"] else "false"
        writer.writerow(cells)
    return out.getvalue().encode()


def write_manifest(storage: Storage, batch: Batch, jobs: list[Job], bucket: str) -> None:
    rows = manifest_rows(batch, jobs, bucket)
    storage.put(batch.manifest_key, manifest_json(batch, rows), "application/json")
    storage.put(batch.manifest_csv_key, manifest_csv(rows), "text/csv")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
