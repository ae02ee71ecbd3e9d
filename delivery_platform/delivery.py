"""Publishing a partition's files: the one place that talks to destinations and the ledger.

`deliver_files` is what every vendor's `_delivery` asset calls:
1. ask the ledger what to do (send / skip: same bytes already delivered / refuse: different
   bytes without `redeliver`), holding the partition's claim so two runs never deliver the
   same partition at once;
2. publish each file atomically, in the given order (a vendor's completion marker goes last),
   reading back size and MD5, recording every attempt (publishing -> delivered / failed);
3. return Dagster metadata (files, URIs, bytes, MD5s, rows) for the asset;
4. once the whole file set is at the vendor, write the partition's receipt beside the ledger
   (receipts.py) and show it in that metadata.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import dagster as dg

from . import receipts
from .core import clock
from .core.files import file_md5
from .destinations import AlreadyExists, DestinationError, Publisher
from .formats.compress import LEGACY_BACKEND, default_backend, zlib_md5
from .ledger import SAME_BYTES, AlreadyDeliveredDifferently, Ledger, PlannedFile
from .registry import Deliverable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingFile:
    path: Path  # local file
    name: str  # name at the destination (relative; may include folders)
    rows: int | None = None
    md5: str | None = None
    bytes: int | None = None
    # MD5 of the bytes before compression (formats/parts.py Part.raw_md5); None when not known (zip, Parquet)
    content_md5: str | None = None
    # how a gzip file was compressed: `ParallelGzip` level and deflate library (None: not a ParallelGzip file)
    gzip_level: int | None = None
    gzip_backend: str | None = None
    # a checksum file (Lotame's `.md5`): the name of the file whose MD5 its text carries
    checksum_of: str | None = None

    @classmethod
    def of_part(cls, part, name: str, *, gzip_level: int | None = None) -> "OutgoingFile":
        """A part a `PartWriter` wrote (formats/parts.py), gzipped at `gzip_level` with the platform's
        deflate library (None: not gzipped)."""
        return cls(part.path, name, rows=part.rows, md5=part.md5, bytes=part.bytes, content_md5=part.raw_md5,
                   gzip_level=gzip_level, gzip_backend=default_backend() if gzip_level is not None else None)


def _md5_text(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _zlib_md5_of(f: OutgoingFile, md5: str) -> Callable[[], str] | None:
    """The MD5 `f`'s content had when gzipped with zlib (files delivered before content MD5s were
    recorded), computed on first call only; None when `f` is no ParallelGzip file."""
    if f.gzip_level is None or not f.gzip_backend:
        return None
    if f.gzip_backend == LEGACY_BACKEND:
        return lambda: md5  # the bytes are what zlib made of them
    return functools.cache(functools.partial(zlib_md5, f.path, f.gzip_level))


def _checksum_zlib_md5(text: str, data_md5: str, data_zlib_md5: Callable[[], str]) -> Callable[[], str]:
    """A checksum file's MD5 had its data file been gzipped with zlib: its text with that file's MD5."""
    return functools.cache(lambda: _md5_text(text.replace(data_md5, data_zlib_md5())))


def _planned(files: Sequence[OutgoingFile]) -> list[tuple[OutgoingFile, PlannedFile]]:
    """Each file with what the ledger compares: bytes (MD5), content (MD5 before compression) and,
    for ledger rows written before content was recorded, the MD5 the same content had when it was
    gzipped with zlib (`legacy_md5`, computed only when such a row is met)."""
    by_name = {f.name: f for f in files}
    md5s = {f.name: f.md5 or file_md5(f.path) for f in files}
    legacy = {f.name: _zlib_md5_of(f, md5s[f.name]) for f in files}
    out: list[tuple[OutgoingFile, PlannedFile]] = []
    for f in files:
        md5, size = md5s[f.name], f.bytes if f.bytes is not None else f.path.stat().st_size
        content, legacy_md5 = f.content_md5, legacy[f.name]
        how = f"gzip -{f.gzip_level} ({f.gzip_backend})" if legacy_md5 else None
        data = by_name.get(f.checksum_of or "")
        if data is not None and data.content_md5:
            # a checksum file's content is the checksum of the data file's *content*: its text with the
            # data file's MD5 in it stands for "this content, compressed some way"
            text = f.path.read_text()
            if md5s[data.name] in text:
                content = _md5_text(text.replace(md5s[data.name], data.content_md5))
                if legacy[data.name]:
                    legacy_md5 = _checksum_zlib_md5(text, md5s[data.name], legacy[data.name])
                how = f"the checksum of {data.name}"
        out.append((f, PlannedFile(name=f.name, md5=md5, bytes=size, rows=f.rows, content_md5=content,
                                   legacy_md5=legacy_md5, compression=how)))
    return out


@dataclass
class DeliveryOutcome:
    action: str
    files: list[dict]
    destination: str
    seconds: float
    # temporary files a killed run left at the vendor that could not be removed (alerted)
    leftovers: list[str] = field(default_factory=list)
    receipt: tuple[Path, dict] | None = None  # (stored path, document) once the partition is complete

    def metadata(self) -> dict:
        total = sum(f["bytes"] for f in self.files)
        extra = receipts.metadata(*self.receipt) if self.receipt else {}
        return {
            **extra,
            "delivery_action": dg.MetadataValue.text(self.action),
            "destination": dg.MetadataValue.text(self.destination),
            "file_count": dg.MetadataValue.int(len(self.files)),
            "bytes": dg.MetadataValue.int(total),
            "dagster/row_count": dg.MetadataValue.int(sum(f.get("rows") or 0 for f in self.files)),
            "rows": dg.MetadataValue.int(sum(f.get("rows") or 0 for f in self.files)),
            "seconds": dg.MetadataValue.float(round(self.seconds, 3)),
            "files": dg.MetadataValue.md(
                "| file | uri | bytes | md5 | rows |\n|---|---|---:|---|---:|\n" + "\n".join(
                    f"| {f['name']} | {f['uri']} | {f['bytes']:,} | `{f['md5']}` | {f.get('rows') if f.get('rows') is not None else ''} |"
                    for f in self.files)),
            "uris": dg.MetadataValue.json([f["uri"] for f in self.files]),
            **({LEFTOVERS: dg.MetadataValue.json(self.leftovers)} if self.leftovers else {}),
        }


LEFTOVERS = "leftover_temporary_files"  # metadata the alert sensor reads


class DeliveryRefused(dg.Failure, AlreadyDeliveredDifferently):
    """The ledger refused the plan (other bytes already delivered). Permanent: the same run gets the
    same answer, so the step fails at once instead of waiting out `delivery_retry_policy`."""

    def __init__(self, message: str):
        super().__init__(message, allow_retries=False)

    def __str__(self) -> str:
        return self.description or ""


def _refuse_future_day(vendor: str, deliverable: str, partition_key: str) -> None:
    """The last guard of every launch path: no vendor ever receives a day that has not begun (the
    readiness check stops days that have not ended earlier, where the vendor's rules say so)."""
    try:
        day = dt.date.fromisoformat(partition_key)
    except ValueError:
        return
    if day > clock.today():
        raise dg.Failure(f"{vendor}/{deliverable}: refusing to deliver {partition_key}, a day in the future "
                         f"(today is {clock.today()} UTC)", allow_retries=False)


def _remove_abandoned_partials(destination: Publisher, abandoned, logger) -> list[str]:
    """A run killed mid-upload may have left its temporary file in the vendor's folder (named
    after its ledger attempt): remove it before delivering again; name what cannot be removed."""
    left = []
    for attempt in abandoned:
        try:
            removed = destination.remove_partial(attempt.file_name, str(attempt.id))
        except DestinationError:
            removed = False
        if removed:
            logger.info(f"removed the temporary file of abandoned attempt {attempt.id} ({attempt.file_name})")
        else:
            partial = destination.partial_path(attempt.file_name, str(attempt.id))
            left.append(f"{partial} beside {destination.uri(attempt.file_name)} (attempt {attempt.id})")
            logger.error(f"could not remove {partial}, the temporary file of abandoned attempt {attempt.id} of "
                         f"{attempt.file_name}; remove it at the vendor by hand")
    return left


def deliver_files(*, vendor: str, deliverable: str, partition_key: str, files: Sequence[OutgoingFile],
                  destination: Publisher, ledger: Ledger, run_id: str, redeliver: bool = False,
                  logger: logging.Logger | None = None, append: bool = False,
                  described: Deliverable | None = None) -> DeliveryOutcome:
    """`append=True`: `files` are added to whatever the partition already holds (iSpot's top-ups);
    only names not yet delivered are sent, and the partition's earlier files are left alone.
    `described`: the deliverable's registry entry, for its receipt (event times, spec, the vendor's answer)."""
    logger = logger or log
    _refuse_future_day(vendor, deliverable, partition_key)
    started = time.monotonic()
    described = described or Deliverable(vendor=vendor, name=deliverable, source="")
    planned = _planned(files)
    destination.logger = logger  # reconnects and retries show in the run's event log
    with ledger.claimed(vendor, deliverable, partition_key, run_id) as abandoned:
        leftovers = _remove_abandoned_partials(destination, abandoned, logger)
        planned_files = [p for _, p in planned]
        try:
            plan = (ledger.plan_append(vendor, deliverable, partition_key, planned_files) if append else
                    ledger.plan_delivery(vendor, deliverable, partition_key, planned_files, redeliver=redeliver))
        except AlreadyDeliveredDifferently as exc:
            raise DeliveryRefused(f"{exc} (Not retried: the same run would be refused again; "
                                  "docs/operating.md, 'Everyday commands'.)") from None
        logger.info(f"{vendor}/{deliverable} {partition_key}: {plan.action} ({plan.reason})")
        if plan.action == "skip":
            done = [{"name": d.file_name, "uri": d.remote_uri, "bytes": d.bytes or 0, "md5": d.md5, "rows": d.rows}
                    for d in plan.already]
            ledger.mark_partition(vendor, deliverable, partition_key, "complete", files=len(planned), run_id=run_id)
            what = "bytes" if plan.reason == SAME_BYTES else "content"
            return _with_receipt(DeliveryOutcome(f"skipped: already delivered with the same {what}", done,
                                                  destination.kind, time.monotonic() - started, leftovers),
                                 ledger, described, partition_key, logger)
        to_send = {p.name for p in plan.send}
        ledger.mark_partition(vendor, deliverable, partition_key, "delivering", files=len(planned), run_id=run_id)
        sent = []
        for f, p in planned:
            if p.name not in to_send:
                prior = next(d for d in plan.already if d.file_name == p.name)
                sent.append({"name": p.name, "uri": prior.remote_uri, "bytes": p.bytes, "md5": p.md5, "rows": p.rows})
                continue
            attempt = ledger.begin(vendor, deliverable, partition_key, p.name, bytes=p.bytes, md5=p.md5, rows=p.rows,
                                   remote_uri=destination.uri(p.name), run_id=run_id, content_md5=p.content_md5)
            try:
                if plan.action == "redeliver" and destination.can_read_back and destination.exists(p.name):
                    raise AlreadyExists(
                        f"[{vendor}] {destination.uri(p.name)} exists; re-delivery of different bytes needs a new "
                        "file name or the old file removed at the vendor first")
                # stores with rename name the temporary file after the attempt (removed on takeover)
                tagged = {"tag": str(attempt)} if destination.leaves_partials else {}
                published = destination.publish(f.path, p.name, md5=p.md5, **tagged)
            except AlreadyExists as exc:
                # The same bytes may already be there from an attempt whose ledger write was lost.
                same = None
                if destination.can_read_back:
                    try:
                        same = destination.verify(p.name, size=p.bytes, md5=p.md5)
                    except DestinationError:
                        pass
                # A store that cannot be read back (iSpot's API): the name is ours when an earlier attempt
                # of ours published these very bytes and its answer was lost.
                earlier = None
                if same is None and not destination.can_read_back:
                    earlier = ledger.own_earlier_attempt(vendor, deliverable, partition_key, p.name, p.md5, attempt)
                if same is None and earlier is None:
                    ledger.finish(attempt, "failed", error=str(exc))
                    raise
                ledger.finish(attempt, "delivered", remote_uri=destination.uri(p.name))
                if earlier is not None:
                    ledger.note(attempt, f"accepted earlier: attempt {earlier.attempt} "
                                         f"(run {earlier.run_id}) published these bytes; the vendor answered 'already exists'")
                logger.info(f"{p.name}: already at the destination with the same bytes; recorded as delivered")
                sent.append({"name": p.name, "uri": destination.uri(p.name), "bytes": p.bytes, "md5": p.md5, "rows": p.rows})
                continue
            except BaseException as exc:
                ledger.finish(attempt, "failed", error=f"{type(exc).__name__}: {exc}")
                raise
            ledger.finish(attempt, "delivered", remote_uri=published.uri)
            if published.note:
                ledger.note(attempt, published.note)
                logger.info(f"{p.name}: {published.note}")
            logger.info(f"published {published.uri} ({published.size:,} bytes, md5 {published.md5})")
            sent.append({"name": p.name, "uri": published.uri, "bytes": published.size, "md5": published.md5, "rows": p.rows})
        total = len(ledger.delivered(vendor, deliverable, partition_key)) if append else len(planned)
        ledger.mark_partition(vendor, deliverable, partition_key, "complete", files=total, run_id=run_id)
        return _with_receipt(DeliveryOutcome(plan.action, sent, destination.kind, time.monotonic() - started,
                                             leftovers), ledger, described, partition_key, logger)


def _with_receipt(outcome: DeliveryOutcome, ledger: Ledger, d: Deliverable, partition_key: str,
                  logger: logging.Logger) -> DeliveryOutcome:
    """Attach the partition's receipt: written when files were sent, kept when a re-run sent nothing
    (or written then, for a partition delivered before receipts existed). The files are at the vendor
    by now: a receipt that cannot be written is a loud warning, not a failed delivery, and the next
    re-run of the partition writes it."""
    try:
        kept = receipts.load(ledger, d, partition_key) if outcome.action.startswith("skipped") else []
        if kept:
            outcome.receipt = (receipts.receipt_path(ledger, d.vendor, d.name, partition_key), kept[0])
        else:
            outcome.receipt = receipts.record(ledger, d, partition_key, destination=outcome.destination,
                                              action=outcome.action)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning(f"{d.label} {partition_key}: delivered, but the receipt was not written: "
                       f"{type(exc).__name__}: {exc}")
    return outcome


class DeliveryConfig(dg.Config):
    """Run configuration of every `_delivery` asset."""

    redeliver: bool = False  # send again even if the partition was delivered with other bytes


def deliver_partition(context: dg.AssetExecutionContext, *, deliverable: Deliverable, files: Sequence[OutgoingFile],
                      destination, ledger: Ledger, redeliver: bool, name: str | None = None) -> DeliveryOutcome:
    """What every `_delivery` asset does: open its destination resource, deliver the partition's files.
    `name`: the ledger name when it is not the deliverable's (dA's opt-out file, sent in the same step)."""
    with destination.get(logger=context.log) as opened:
        return deliver_files(vendor=deliverable.vendor, deliverable=name or deliverable.name,
                             partition_key=context.partition_key, files=files, destination=opened, ledger=ledger,
                             run_id=context.run_id, redeliver=redeliver, logger=context.log,
                             described=deliverable if name is None else None)
