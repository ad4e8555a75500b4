"""Datasets in and trained weights out through S3, for training jobs on a cluster (the Helm chart's training Job).

Keys follow the weights bucket's layout that `vton weights pull --from s3://BUCKET/PREFIX` reads:
PREFIX/<backend>/<file>. Only real files are uploaded: the links an export folder holds to the official files
(already in the bucket) are not. The endpoint is VTON_S3_ENDPOINT when set (an S3-compatible server), credentials
the usual AWS_* variables.
"""

from __future__ import annotations

import os
from pathlib import Path


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ValueError(f"not an s3://BUCKET/PREFIX address: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def _client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("VTON_S3_ENDPOINT") or None)


def download_tree(uri: str, destination: Path, log=print) -> Path:
    """Every object under s3://BUCKET/PREFIX into `destination` (same relative paths); present files of the same
    size are kept, so a restarted job does not fetch the dataset again."""
    bucket, prefix = split_uri(uri)
    client = _client()
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


def upload_weights(folder: Path, uri: str, log=print) -> list[str]:
    """The real files of a backend's export folder to s3://BUCKET/PREFIX/<backend>/<file>; returns the keys."""
    bucket, prefix = split_uri(uri)
    client = _client()
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        key = "/".join(part for part in (prefix, folder.name, str(path.relative_to(folder))) if part)
        client.upload_file(str(path), bucket, key)
        keys.append(key)
        log(f"  s3://{bucket}/{key}")
    return keys
