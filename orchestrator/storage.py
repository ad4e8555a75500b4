"""Objects in S3 through boto3: job inputs, stage artifacts and results, handed to clients as presigned URLs.

Works against any S3-compatible server (SeaweedFS on one machine, AWS S3 or a cluster's store) with
path-style addressing and SigV4, so a bucket name never has to resolve as a host name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.settings import Settings

log = logging.getLogger("vton.orchestrator.storage")

CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "json": "application/json",
}


# S3's error codes for a server that is failing or overloaded rather than refusing the request, as is any 5xx or
# 429 status whatever its code: the same call succeeds once the server has recovered.
_TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException"}
)
# No object under the key (a HEAD answer has no body, hence its bare status).
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


class StorageError(RuntimeError):
    """S3 could not be reached or refused an operation; the message says which and why.

    `transient`: the store was unreachable or failing (a connection error, a 5xx, throttling), so the same call
    may succeed later. Otherwise S3 refused this request (a missing object, access denied, a bad request) and
    would refuse it again. `missing`: the refusal is that no object exists under the key."""

    def __init__(self, message: str, *, transient: bool, missing: bool = False) -> None:
        super().__init__(message)
        self.transient, self.missing = transient, missing


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: float  # unix seconds


def content_type_for(key: str) -> str:
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


class Storage:
    """One bucket. Thread-safe: a boto3 client may be shared between threads (a session may not)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        public_endpoint: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        url_ttl_s: int,
        timeout_s: float = 30.0,
    ) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self.url_ttl_s = url_ttl_s
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=min(5.0, timeout_s),
            read_timeout=timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        self._client = session.client("s3", endpoint_url=endpoint, config=config)
        # SigV4 signs the Host header: URLs for clients are signed for the host they will use. Signing is
        # local (no request), so this second client never talks to that endpoint itself.
        self._signer = (
            session.client("s3", endpoint_url=public_endpoint, config=config)
            if public_endpoint and public_endpoint != endpoint
            else self._client
        )

    def _fail(self, what: str, exc: ClientError | BotoCoreError) -> StorageError:
        where = f"{self.endpoint or 'AWS S3'} bucket {self.bucket!r}"
        if isinstance(exc, ClientError):  # S3 answered with an error
            err = exc.response.get("Error", {})
            code = err.get("Code", "?")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            reason = f"{code}: {err.get('Message') or 'no message'}"
            transient = status >= 500 or status == 429 or code in _TRANSIENT_CODES
            missing = code in _MISSING_CODES
        else:  # no answer: connection refused or reset, a timeout, a response cut short
            reason, transient, missing = str(exc), True, False
        return StorageError(
            f"storage ({where}): {what} failed: {reason}", transient=transient, missing=missing
        )

    def bucket_exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES | {"NoSuchBucket"}:
                return False
            raise self._fail("head_bucket", exc) from None
        except BotoCoreError as exc:
            raise self._fail("head_bucket", exc) from None

    def ensure_bucket(self, wait_s: float = 0.0, interval_s: float = 0.5) -> bool:
        """Create the bucket when missing; retry for `wait_s` seconds while S3 comes up.

        Returns True when this call created it. Raises StorageError when S3 stays unreachable.
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if self.bucket_exists():
                    return False
                kwargs = {}
                if self.region != "us-east-1":  # AWS refuses the constraint for its default region
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                try:
                    self._client.create_bucket(Bucket=self.bucket, **kwargs)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        return False  # another replica created it between our two calls
                    raise self._fail("create_bucket", exc) from None
                except BotoCoreError as exc:
                    raise self._fail("create_bucket", exc) from None
                log.info("created bucket %s", self.bucket)
                return True
            except StorageError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(interval_s)

    def ping(self) -> None:
        """Raise StorageError unless the bucket exists and answers."""
        if not self.bucket_exists():
            raise StorageError(
                f"storage ({self.endpoint or 'AWS S3'}): bucket {self.bucket!r} does not exist",
                transient=False,
            )

    def put(self, key: str, data: bytes, content_type: str | None = None) -> str:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type or content_type_for(key)
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"put {key}", exc) from None
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"get {key}", exc) from None

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and time, or None when there is no object under `key`."""
        try:
            meta = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise self._fail(f"head {key}", exc) from None
        except BotoCoreError as exc:
            raise self._fail(f"head {key}", exc) from None
        return ObjectInfo(key, int(meta["ContentLength"]), meta["LastModified"].timestamp())

    def list(self, prefix: str, limit: int = 1000, after: str | None = None) -> list[ObjectInfo]:
        """Up to `limit` objects under `prefix` in key order, those after the key `after` (paging)."""
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if after:
            kwargs["StartAfter"] = after
        try:
            page = self._client.list_objects_v2(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"list {prefix}", exc) from None
        return [
            ObjectInfo(item["Key"], int(item["Size"]), item["LastModified"].timestamp())
            for item in page.get("Contents", [])
        ]

    def presign(self, key: str, ttl_s: int | None = None) -> str:
        """A GET URL for `key` that works without credentials for `ttl_s` seconds (default url_ttl_s)."""
        return self._signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=int(ttl_s or self.url_ttl_s),
        )


def storage_from_settings(settings: Settings) -> Storage:
    """The Storage that `settings` describes."""
    secret = settings.s3_secret_key
    return Storage(
        settings.s3_bucket,
        endpoint=settings.s3_endpoint,
        public_endpoint=settings.s3_public_endpoint,
        region=settings.s3_region,
        access_key=settings.s3_access_key,
        secret_key=secret.get_secret_value() if secret is not None else None,
        url_ttl_s=settings.url_ttl_s,
    )
