"""The pipeline's SharedSteps for catalog batches: what the jobs of a batch share is done once, by the first job
that needs it, and read by the others.

- A person's analysis: pose, densepose and parsing of the photo. Their responses are stored (compressed) under the
  batch's prefix, their artifacts are the computing job's, and every other job of that person reports the three
  steps as `reused`.
- A garment's category, when the batch did not name it: inferred once, from the garment photo.

The batch's item row is the lock (orchestrator.batches): a job claims it and the others wait for it to end. A
failure that belongs to the photo (no person found, not an image, no garment in it) is kept on the item, so every
job of that photo fails with it without asking the stage again; any other failure (a stage unavailable, a
shutdown) hands the item back for the next job to try. A job outside a batch does both steps itself.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import grpc

from orchestrator.batches import GARMENT, PERSON, BatchItem, BatchStore, batch_prefix
from orchestrator.jobs import CATEGORY_STEP, FAILED, RUNNING, SUCCEEDED, Job, StageState, owner_is_gone
from orchestrator.pipeline import (
    PERSON_STEPS,
    STEP_STAGES,
    CategoryGuess,
    Interrupted,
    PersonAnalysis,
    Progress,
    Storage,
)
from orchestrator.stages import StageError
from vton.v1 import parsing_pb2, pose_pb2

# Errors of the photo itself: every job of the photo would get the same answer, so the first one's is kept.
_PHOTO_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)

T = TypeVar("T")


class BatchSteps:
    """The pipeline's SharedSteps: a batch job's garment category and person analysis, done once per batch.
    A job outside a batch does both itself; every inferred category is recorded on its job."""

    def __init__(self, batches: BatchStore, storage: Storage, *, lease_s: float, poll_s: float = 0.2) -> None:
        self.batches, self.storage, self.lease_s, self.poll_s = batches, storage, lease_s, poll_s
        self.jobs = batches.jobs

    def category(self, job: Job, infer: Callable[[], CategoryGuess], progress: Progress) -> CategoryGuess:
        if job.batch_id is None or job.batch_garment is None:
            guess = infer()
        else:
            guess = self._shared(
                job, GARMENT, job.batch_garment, progress, infer, _saved_guess, _reused_guess
            )
        self.jobs.set_category(job.id, job.claim_token or "", guess.category, guess.confidence, guess.scores)
        return guess

    def person(self, job: Job, analyse: Callable[[], PersonAnalysis], progress: Progress) -> PersonAnalysis:
        if job.batch_id is None or job.batch_person is None:
            return analyse()
        prefix = f"{batch_prefix(job.tenant_id, job.batch_id)}people/{job.batch_person}/"
        return self._shared(
            job,
            PERSON,
            job.batch_person,
            progress,
            analyse,
            lambda analysis: (self._save_analysis(prefix, analysis), None),
            self._reused_analysis,
        )

    def _shared(
        self,
        job: Job,
        kind: str,
        position: int,
        progress: Progress,
        compute: Callable[[], T],
        save: Callable[[T], tuple[dict[str, Any], str | None]],
        reuse: Callable[[BatchItem, Progress], T],
    ) -> T:
        """The item's shared work: reused when done, the item's error when it failed, done here when this job
        claims it, else waited for (another job of the batch is doing it)."""
        batch_id = job.batch_id or ""
        while True:
            item = self.batches.item(batch_id, kind, position)
            assert item is not None, f"job {job.id} names {kind} {position} of batch {batch_id}"
            if item.status == SUCCEEDED:
                return reuse(item, progress)
            if item.status == FAILED:
                raise _item_error(item)
            stale = item.claim_token if item.status == RUNNING and owner_is_gone(item.owner) else None
            token = self.batches.claim_item(batch_id, kind, position, self.jobs.owner, self.lease_s, stale)
            if token is not None:
                with self._holding(batch_id, kind, position, token):
                    made = compute()
                    result, category = save(made)
                self.batches.finish_item(
                    batch_id, kind, position, token, SUCCEEDED, result=result, category=category
                )
                return made
            if progress.cancelled():
                raise Interrupted(f"stopped while another job of batch {batch_id} works on its {kind}")
            time.sleep(self.poll_s)

    @contextlib.contextmanager
    def _holding(self, batch_id: str, kind: str, position: int, token: str) -> Iterator[None]:
        """The claimed item's work: a failure of its photo is kept on the item (every job of the photo fails
        with it), any other failure hands the item back for the next job to try."""
        try:
            yield
        except StageError as exc:
            if exc.code in _PHOTO_ERRORS:
                self.batches.finish_item(batch_id, kind, position, token, FAILED, error=exc)
            else:
                self.batches.release_item(batch_id, kind, position, token)
            raise
        except BaseException:
            self.batches.release_item(batch_id, kind, position, token)
            raise

    def _save_analysis(self, prefix: str, analysis: PersonAnalysis) -> dict[str, Any]:
        """The responses the later steps read, compressed (a pose map is mostly zeros), and the steps' record."""
        responses = {}
        for step, response in (("pose", analysis.pose), ("parsing", analysis.parsing)):
            data = zlib.compress(response.SerializeToString(), 1)
            responses[step] = self.storage.put(f"{prefix}{step}.pb.zlib", data, "application/octet-stream")
        return {
            "states": {step: _state_record(state) for step, state in analysis.states.items()},
            "artifacts": analysis.artifacts,
            "responses": responses,
        }

    def _reused_analysis(self, item: BatchItem, progress: Progress) -> PersonAnalysis:
        result = item.result or {}
        pose = pose_pb2.EstimatePoseResponse.FromString(
            zlib.decompress(self.storage.get(result["responses"]["pose"]))
        )
        parsing = parsing_pb2.ParseResponse.FromString(
            zlib.decompress(self.storage.get(result["responses"]["parsing"]))
        )
        states = {step: _reused_state(result["states"][step]) for step in PERSON_STEPS}
        for step, state in states.items():
            progress.stage(step, state)
        for name, key in result["artifacts"].items():
            progress.artifact(name, key)
        return PersonAnalysis(pose, parsing, states, dict(result["artifacts"]))


def _saved_guess(guess: CategoryGuess) -> tuple[dict[str, Any], str | None]:
    record = {"confidence": guess.confidence, "scores": guess.scores, "state": _state_record(guess.state)}
    return record, guess.category


def _reused_guess(item: BatchItem, progress: Progress) -> CategoryGuess:
    result = item.result or {}
    state = _reused_state(result["state"])
    progress.stage(CATEGORY_STEP, state)
    return CategoryGuess(item.category or "", result["confidence"], result["scores"], state)


def _state_record(state: StageState) -> dict[str, Any]:
    return {"backend": state.backend, "seconds": state.seconds, "people_detected": state.people_detected}


def _reused_state(record: dict[str, Any]) -> StageState:
    return replace(StageState(SUCCEEDED, **record), reused=True)


def _item_error(item: BatchItem) -> StageError:
    """The error the item's photo got, as the StageError each of its jobs fails with."""
    step = item.error_stage or ""
    code = grpc.StatusCode[item.error_code] if item.error_code else grpc.StatusCode.UNKNOWN
    error = StageError(step, STEP_STAGES.get(step, step), code, item.error or f"the {item.kind} failed")
    error.error_code = (item.result or {}).get("job_error_code", error.error_code)
    return error
