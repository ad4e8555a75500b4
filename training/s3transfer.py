"""A dataset in S3 fetched for a training job on a cluster (the Helm chart's training Job).

The trained weights go back with `vton weights push` (vton/runtime/weights.py), which `vton train --push` runs. The
endpoint is VTON_S3_ENDPOINT when set (an S3-compatible server), credentials the usual AWS_* variables.
"""

from __future__ import annotations

from pathlib import Path

from vton.runtime.weights import s3_client, split_s3_uri


def download_tree(uri: str, destination: Path, log=print) -> Path:
    """Every object under s3://BUCKET/PREFIX into `destination` (same relative paths); present files of the same
    size are kept, so a restarted job does not fetch the dataset again."""
    bucket, prefix = split_s3_uri(uri)
    client = s3_client()
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
    ):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :].lstrip("/")
            if not relative or relative.endswith("/"):
                continue
            target = destination / relative
            if target.is_file() and target.stat().st_size == item["Size"]:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(target))
            count += 1
    log(f"{uri}: {count} file(s) fetched into {destination}")
    return destination
