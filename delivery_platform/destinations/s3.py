"""Amazon S3 (or any S3 API) with boto3, opened from dagster-aws's `S3Resource`.

Atomic and no-overwrite: one PUT with `If-None-Match: *` for files up to the multipart
threshold; above it a multipart upload, invisible until completed (also with `If-None-Match`),
aborted on any failure so no partial object or orphaned parts stay behind. The MD5 is stored
as object metadata because a multipart ETag is not an MD5.

Credentials, session and endpoint come from dagster-aws's `S3Resource` (access keys, session
token, profile, region, endpoint, SSL and certificate checks, unsigned access; without keys, the
default AWS chain) and its retry configuration (botocore "standard" mode, `max_attempts`, set
here to RETRIES + 1). Its `get_client()` cannot take connect/read timeouts, and a delivery must
give up on a stalled server in bounded time, so `s3_client` opens the same session from the
resource's fields with that retry configuration plus our timeouts. "Standard" mode retries 5xx,
throttling (SlowDown, 429), dropped connections and timeouts with jittered exponential backoff.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import disable_signing
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import construct_boto_client_retry_config

from ..core.files import CHUNK, file_md5
from .base import AlreadyExists, Destination, DestinationError, FileInfo
from .objects import ReadStream, hex_to_b64, join_key, strip_key

MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20


def s3_client(s3: S3Resource, *, timeout: float):
    """A boto3 S3 client opened as `S3Resource.get_client()` opens it (same session, credentials,
    endpoint and retry configuration), whose requests also wait at most `timeout` seconds to connect
    and `timeout` seconds for each read."""
    config = construct_boto_client_retry_config(s3.max_attempts).merge(
        Config(connect_timeout=timeout, read_timeout=timeout))
    client = boto3.session.Session(profile_name=s3.profile_name).client(
        "s3", region_name=s3.region_name, endpoint_url=s3.endpoint_url, use_ssl=s3.use_ssl, verify=s3.verify,
        aws_access_key_id=s3.aws_access_key_id, aws_secret_access_key=s3.aws_secret_access_key,
        aws_session_token=s3.aws_session_token, config=config)
    if s3.use_unsigned_session:
        client.meta.events.register("choose-signer.s3.*", disable_signing)
    return client


class S3Destination(Destination):
    kind = "s3"

    def __init__(self, vendor: str, *, bucket: str, s3: S3Resource, prefix: str = "",
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                 timeout: float = 60.0):
        super().__init__(vendor)
        self.bucket, self.prefix = bucket, prefix
        self.multipart_threshold, self.part_size = multipart_threshold, part_size
        self.client = s3_client(s3, timeout=timeout)

    def _key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def _error(self, action: str, name: str, exc: Exception) -> DestinationError:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        return DestinationError(f"[{self.vendor}] {action} {self.uri(name)} failed: {code}")

    def _publish(self, local_path: Path, name: str) -> None:
        key, md5 = self._key(name), file_md5(local_path)
        size = Path(local_path).stat().st_size
        try:
            if size <= self.multipart_threshold:
                with open(local_path, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*",
                                           ContentMD5=hex_to_b64(md5), Metadata={"md5": md5})
            else:
                self._multipart(local_path, key, md5)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise AlreadyExists(f"[{self.vendor}] {self.uri(name)} already exists; refusing to overwrite") from None
            raise self._error("uploading", name, exc) from None
        except (BotoCoreError, OSError) as exc:
            raise self._error("uploading", name, exc) from None

    def _multipart(self, local_path: Path, key: str, md5: str) -> None:
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata={"md5": md5})
        upload_id = upload["UploadId"]
        try:
            parts = []
            with open(local_path, "rb") as handle:
                for number, chunk in enumerate(iter(lambda: handle.read(self.part_size), b""), start=1):
                    done = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                   PartNumber=number, Body=chunk)
                    parts.append({"PartNumber": number, "ETag": done["ETag"]})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id, IfNoneMatch="*",
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass
            raise

    def replace(self, local_path: Path, name: str) -> None:
        """Store `local_path` as `name` whether or not it exists (state files, not deliveries):
        boto3's managed transfer, one PUT or a multipart upload visible only when complete."""
        md5 = file_md5(local_path)
        try:
            self.client.upload_file(str(local_path), self.bucket, self._key(name), ExtraArgs={"Metadata": {"md5": md5}})
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._error("uploading", name, exc) from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (ClientError, BotoCoreError) as exc:
            raise self._error("deleting", name, exc) from None

    def list(self, prefix: str = "") -> list[FileInfo]:
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                for obj in page.get("Contents", []):
                    name = strip_key(self.prefix, obj["Key"])
                    out.append(FileInfo(name=name, size=obj["Size"], mtime=obj["LastModified"].timestamp()))
        except (ClientError, BotoCoreError) as exc:
            raise self._error("listing", prefix, exc) from None
        return sorted(out, key=lambda f: f.name)

    def stat(self, name: str) -> FileInfo:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(self.uri(name)) from None
            raise self._error("reading", name, exc) from None
        md5 = head.get("Metadata", {}).get("md5")
        modified = head.get("LastModified")
        return FileInfo(name=name, size=head["ContentLength"], md5=md5,
                        mtime=modified.timestamp() if isinstance(modified, dt.datetime) else None)

    def open(self, name: str) -> BinaryIO:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(self.uri(name)) from None
            raise self._error("reading", name, exc) from None
        return ReadStream(lambda size=-1: body.read(None if size < 0 else size or CHUNK), body.close)

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"
