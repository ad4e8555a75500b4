"""What an export says about itself: provenance.json (who trained it, from what, on which data, under which licence)
and SHA256SUMS over every file written, provenance.json included. `vton weights` reads both (vton/runtime/weights.py):
`pull --from s3://` checks a pushed export's files against its SHA256SUMS, and the backend's licence reads
"self-trained (...)" in `vton weights list` and in every answer of the stage that serves it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from training.trainers.base import ModuleTrainer
from vton.runtime.weights import Provenance, load_manifest, write_checksums

# Manifest sources of files nobody publishes (trained or exported by the user): no licence of theirs to inherit.
UNPUBLISHED = ("train:", "export:")


def provenance(trainer: ModuleTrainer, written: list[Path], folder: Path, step: int, data: str) -> Provenance:
    """The record of an export of `trainer` at `step` whose files `written` lie in `folder`.

    `base` names the published files whose licence still applies: those the run fine-tuned (`init: official`), or
    those an export of one file of several is served beside (a diffusion module's folder links the others)."""
    config = trainer.config
    entry = load_manifest().get(trainer.backend)
    published = entry is not None and any(not f.source.startswith(UNPUBLISHED) for f in entry.files)
    whole = entry is not None and {f.path for f in entry.files} <= {
        p.relative_to(folder).as_posix() for p in written
    }
    base = ""
    if entry is not None and published and (config.init == "official" or not whole):
        base = f"{trainer.backend}: {entry.license}"
    return Provenance(
        module=trainer.name,
        init=config.init,
        data=data,
        steps=step,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        license=config.weights_license or "",
        base=base,
    )


def write_records(
    trainer: ModuleTrainer, written: list[Path], folder: Path, step: int, data: str
) -> list[Path]:
    """provenance.json and SHA256SUMS beside the files `written` (which they then describe)."""
    record = provenance(trainer, written, folder, step, data).write(folder)
    return [record, write_checksums([*written, record], folder)]
