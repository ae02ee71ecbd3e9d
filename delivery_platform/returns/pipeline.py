"""One pipeline for every file a vendor sends back (Idomoo PURL files, dA match exports, …).

A feed is a description (`ReturnFeed`): where to watch, how a file is recognised and judged
complete, how it is parsed to a table, and its checks. `build_return_defs(feed, running)` turns it
into Dagster definitions:

- a sensor that lists the location and requests one run per new *version* of a file (the run key is
  name + version, so a file re-sent under the same name is taken in again). The cursor is what was
  seen, not a time watermark: per file still present, a digest of the version taken in, and the
  versions waiting to complete. A file's time does not matter (a vendor clock behind ours, a late
  re-send);
- an ingest asset partitioned by file (dynamic partitions): the file is kept as received first
  (`received/<vendor>/<key>`, an earlier different version kept aside, receiving.py), parsed by the
  feed, and the rows stored as Parquet atomically (`returns/<table>/<key>.parquet`, the warehouse
  view `returns_<table>`). A file the feed rejects is copied to `quarantine/<vendor>/<key>` and the
  run fails naming file, rule, column and sample rows; nothing received is dropped;
- the feed's checks, which read this run's own rows (never a later version's).

Where those keys live (local folders or an object-storage prefix) is state_store.py's business.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import dagster as dg

from .. import settings
from ..core import clock
from ..destinations.base import Destination, DestinationError, FileInfo
from ..state_store import StateStore, state_store
from .receiving import keep_received, quarantine


# --- what a feed describes -------------------------------------------------------------------
@dataclass(frozen=True)
class Refused:
    """A file at the location that is not taken in, said once per version (`level`: warning/error)."""

    reason: str
    level: str = "warning"


@dataclass(frozen=True)
class Ready:
    """A complete file version to take in."""

    file: FileInfo
    version: str

    @property
    def name(self) -> str:
        return self.file.name


class Rejected(Exception):
    """The feed refuses a received file: it goes to quarantine and the run fails with this text.
    `whole=True`: the text already names the file (pandera's report)."""

    def __init__(self, why: str, *, metadata: Optional[dict] = None, key: Optional[str] = None,
                 path: Optional[Path] = None, whole: bool = False):
        super().__init__(why)
        # `path`/`key`: another received file to quarantine than the partition's (an error file)
        self.metadata, self.key, self.path, self.whole = metadata or {}, key, path, whole


@dataclass
class Intake:
    """What a feed's `parse` works with: the kept file and where to put the table."""

    feed: "ReturnFeed"
    context: Any  # the asset's execution context
    key: str  # partition key
    remote: str  # the file's name at the location
    kept: Path  # a local copy of the received bytes
    store: StateStore
    settings: Any
    resources: dict
    staged: Path  # where `parse` writes the table (Parquet)

    def run_path(self, kind: str) -> Path:
        return run_data(self.feed, self.context.run.run_id, kind)

    def receive(self, remote: str, key: str) -> Path:
        """Keep another file of the location (e.g. an error file beside the main one)."""
        with self.feed.open_source(self.resources[self.feed.source]) as source:
            return keep_received(source, remote, self.store, self.feed.vendor, key)

    def source_exists(self, remote: str) -> bool:
        with self.feed.open_source(self.resources[self.feed.source]) as source:
            return source.exists(remote)

    def store_table(self, table: str, key: str, parquet: Path) -> str:
        return self.store.put(f"returns/{table}/{key}.parquet", parquet)


@dataclass(frozen=True)
class Parsed:
    rows: int
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FeedCheck:
    """One check of a feed: `fn(context, rows: Path, resources: dict) -> AssetCheckResult`."""

    name: str
    description: str
    fn: Callable[..., dg.AssetCheckResult]
    resources: tuple[str, ...] = ()
    blocking: bool = False


def present(_file: FileInfo, _listing: dict, _pending: dict, _settings) -> tuple[bool, str]:
    """Completeness rule: a file is complete when it is listed (the location publishes atomically)."""
    return True, ""


def unchanged_across_ticks(file: FileInfo, _listing: dict, pending: dict, _settings) -> tuple[bool, str]:
    """Completeness rule: complete when size and time are the same on two ticks in a row."""
    return pending.get(file.name, [None])[0] == file_version(file), ""


@dataclass(frozen=True)
class ReturnFeed:
    vendor: str
    asset: str  # the ingest asset's name under the vendor: key [vendor, asset]
    table: str  # returns/<table>/<key>.parquet, warehouse view returns_<table>
    partitions: str  # the dynamic partitions' name (one partition per file)
    sensor: str  # the sensor's name
    title: str  # how messages name one file, e.g. "Idomoo PURL file"
    source: str  # resource key of the watched location (a DestinationResource)
    recognise: Callable[[str, Any], "str | Refused | None"]  # name -> partition key; None: not ours
    parse: Callable[[Intake], Parsed]  # kept file -> intake.staged (Parquet); raises Rejected
    folder: Callable[[Any], str] = lambda _s: ""  # the watched folder below the location's root
    complete: Callable[..., tuple[bool, str]] = present  # (file, listing by name, pending, settings)
    remote_of: Callable[[str, Any], str] = lambda key, _s: key.replace("~", "/")  # key -> name
    checks: tuple[FeedCheck, ...] = ()
    settings: Optional[str] = None  # resource key of the feed's settings, handed to every hook
    open_source: Callable[[Any], Destination] = lambda resource: resource.get()
    on_tick: Optional[Callable[..., None]] = None  # (context, listing, cursor, ready, resources, now): alerts
    on_missing_folder: Optional[Callable[..., None]] = None  # (exc, source, folder, resources)
    read_cursor: Callable[[Optional[str]], dict] = lambda text: json.loads(text) if text else {}
    interval: Callable[[], int] = lambda: 300  # seconds between sensor ticks (read when defs build)
    sensor_description: str = ""
    asset_description: str = ""
    kinds: frozenset = frozenset({"csv"})
    alerts: bool = True  # the sensor takes `alert_sinks`

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.vendor, self.asset])


# --- the watching --------------------------------------------------------------------------------
def file_version(f: FileInfo) -> str:
    return f"{f.size}:{f.mtime!r}" + (f":{f.md5}" if f.md5 else "")


def _short(text: str, size: int) -> str:
    """A short stable digest: the cursor holds one per file, so 10,000 files stay near 300 kB."""
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def ready_files(feed: ReturnFeed, listing: list[FileInfo], cursor: dict, *, now: float, settings=None,
                log=None) -> tuple[list[Ready], dict]:
    """Files complete and not yet taken in at this version (pure: tested directly). Returns them
    and the new cursor: `taken` (digest of the name -> digest of the version) and `pending` (name ->
    [version, first seen]), both for files still present only; the cursor's other fields are kept."""
    taken, pending = cursor.get("taken", {}), cursor.get("pending", {})
    by_name = {f.name: f for f in listing}
    ready, new_taken, new_pending = [], {}, {}
    for f in listing:
        found = feed.recognise(f.name, settings)
        if found is None:
            continue
        version = file_version(f)
        complete, more = (True, "") if isinstance(found, Refused) else feed.complete(f, by_name, pending, settings)
        version += more
        name_id, version_id = _short(f.name, 6), _short(version, 5)
        if taken.get(name_id) == version_id:
            new_taken[name_id] = version_id
            continue
        if name_id in taken:
            new_taken[name_id] = taken[name_id]
        if isinstance(found, Refused):  # said once per version, never silently skipped
            if log is not None:
                getattr(log, found.level)(found.reason)
            new_taken[name_id] = version_id
        elif complete:
            ready.append(Ready(f, version))
            new_taken[name_id] = version_id
        else:
            first_seen = pending.get(f.name, [None, now])[1]
            new_pending[f.name] = [version, first_seen]
    others = {k: v for k, v in cursor.items() if k not in ("taken", "pending")}
    return ready, {**others, "taken": new_taken, "pending": new_pending}


def evaluate(feed: ReturnFeed, context: dg.SensorEvaluationContext, resources: dict) -> dg.SensorResult:
    """One tick of the feed's sensor (called with the resources as a dict: tests call it directly)."""
    s = resources.get(feed.settings) if feed.settings else None
    cursor = feed.read_cursor(context.cursor)
    folder = feed.folder(s)
    with feed.open_source(resources[feed.source]) as source:
        try:
            source.require_folder(folder)
        except DestinationError as exc:
            # a wrong folder must not look like an empty one forever: every tick fails, one alert
            if feed.on_missing_folder is not None:
                feed.on_missing_folder(exc, source, folder, resources)
            raise
        listing = source.list(folder + "/" if folder else "")
    now = clock.now().timestamp()
    ready, new_cursor = ready_files(feed, listing, cursor, now=now, settings=s, log=context.log)
    if feed.on_tick is not None:
        feed.on_tick(context, listing, new_cursor, ready, resources, now)
    requests, keys = [], []
    for item in ready:
        key = feed.recognise(item.name, s)
        keys.append(key)
        requests.append(dg.RunRequest(run_key=f"{item.name}:{item.version}", partition_key=key,
                                      tags={"vendor": feed.vendor, "source_file": item.name,
                                            "source_version": item.version[:200]}))
    pdef = dg.DynamicPartitionsDefinition(name=feed.partitions)
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor, sort_keys=True),
                           dynamic_partitions_requests=[pdef.build_add_request(keys)] if keys else [])


# --- the ingest and its checks -------------------------------------------------------------------
def run_data(feed: ReturnFeed, run_id: str, kind: str = "rows") -> Path:
    """This run's own rows (run-local staging): its checks read these, never a later version's."""
    return settings.staging_dir() / feed.vendor / feed.asset / "runs" / f"{run_id}.{kind}.parquet"


def stored_key(feed: ReturnFeed, key: str) -> str:
    return f"returns/{feed.table}/{key}.parquet"


def source_file(feed: ReturnFeed, context, s) -> str:
    """The file's name at the location: the sensor's tag, else the partition key's path."""
    tags = context.run.tags if context.run else {}
    return tags.get("source_file") or feed.remote_of(context.partition_key, s)


def ingest(feed: ReturnFeed, context: dg.AssetExecutionContext, resources: dict) -> dg.MaterializeResult:
    key = context.partition_key
    s = resources.get(feed.settings) if feed.settings else None
    store = state_store()
    remote = source_file(feed, context, s)
    with feed.open_source(resources[feed.source]) as source:
        kept = keep_received(source, remote, store, feed.vendor, key)  # our copy first: nothing received is lost
    staged = settings.staging_dir() / feed.vendor / feed.asset / f"{key}.parquet"
    intake = Intake(feed, context, key, remote, kept, store, s, resources, staged)
    try:
        parsed = feed.parse(intake)
    except Rejected as exc:
        where = quarantine(store, exc.path or kept, feed.vendor, exc.key or key)
        text = str(exc) if exc.whole else f"{feed.title} {remote}: {exc}"
        raise dg.Failure(f"{text}. Kept at {where}; nothing was deleted.", metadata=exc.metadata,
                         allow_retries=False) from None
    stored = intake.store_table(feed.table, key, staged)
    own = run_data(feed, context.run.run_id)
    own.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(staged, own)
    staged.unlink(missing_ok=True)
    context.log.info(f"{remote}: {parsed.rows:,} rows stored at {stored}")
    return dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(parsed.rows),
                                          "rows": dg.MetadataValue.int(parsed.rows), "source_file": remote,
                                          "stored": dg.MetadataValue.path(stored), **parsed.metadata})


def checked_rows(feed: ReturnFeed, context) -> Path:
    """The rows this run took in; the stored table when the check runs alone."""
    own = run_data(feed, context.run.run_id)
    if own.exists():
        return own
    return state_store().get(stored_key(feed, context.partition_key))


def _resource_keys(feed: ReturnFeed, extra: tuple[str, ...] = ()) -> set[str]:
    return {feed.source, *extra} | ({feed.settings} if feed.settings else set())


def _resources(context, keys) -> dict:
    return {k: getattr(context.resources, k) for k in keys}


@dataclass
class ReturnPipeline:
    """The definitions of one feed, built once (assets and checks are importable objects)."""

    feed: ReturnFeed
    partitions: dg.DynamicPartitionsDefinition = field(init=False)
    asset: dg.AssetsDefinition = field(init=False)
    checks: dict[str, dg.AssetChecksDefinition] = field(init=False)

    def __post_init__(self):
        feed = self.feed
        self.partitions = dg.DynamicPartitionsDefinition(name=feed.partitions)
        asset_keys = _resource_keys(feed)

        @dg.asset(key=feed.asset_key, group_name=feed.vendor, partitions_def=self.partitions,
                  kinds=set(feed.kinds), pool=feed.vendor, required_resource_keys=asset_keys,
                  description=feed.asset_description or f"One {feed.title} (a dynamic partition per file).")
        def _ingest(context) -> dg.MaterializeResult:
            return ingest(feed, context, _resources(context, asset_keys))

        self.asset = _ingest
        self.checks = {c.name: self._check(c) for c in feed.checks}

    def _check(self, check: FeedCheck) -> dg.AssetChecksDefinition:
        feed, keys = self.feed, _resource_keys(self.feed, check.resources)

        @dg.asset_check(asset=self.asset, name=check.name, blocking=check.blocking, pool=feed.vendor,
                        required_resource_keys=keys, description=check.description)
        def _run(context) -> dg.AssetCheckResult:
            return check.fn(context, checked_rows(feed, context), _resources(context, keys))

        return _run

    def sensor(self, running: bool) -> dg.SensorDefinition:
        feed = self.feed
        keys = _resource_keys(feed) | ({"alert_sinks"} if feed.alerts else set())

        def tick(context):
            return evaluate(feed, context, _resources(context, keys))

        return dg.sensor(name=feed.sensor, minimum_interval_seconds=feed.interval(),
                         asset_selection=dg.AssetSelection.assets(feed.asset_key), required_resource_keys=keys,
                         default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
                         description=feed.sensor_description or f"Watches for {feed.title}s.")(tick)

    def defs(self, running: bool, resources: Optional[dict] = None) -> dg.Definitions:
        return dg.Definitions(assets=[self.asset], asset_checks=list(self.checks.values()),
                              sensors=[self.sensor(running)], resources=resources)


_built: dict[str, ReturnPipeline] = {}


def return_pipeline(feed: ReturnFeed) -> ReturnPipeline:
    """The feed's pipeline, built on first use and shared after (one asset object per feed)."""
    if feed.asset_key.to_user_string() not in _built or _built[feed.asset_key.to_user_string()].feed is not feed:
        _built[feed.asset_key.to_user_string()] = ReturnPipeline(feed)
    return _built[feed.asset_key.to_user_string()]


def build_return_defs(feed: ReturnFeed, running: bool = False, resources: Optional[dict] = None) -> dg.Definitions:
    """The feed's sensor, ingest asset and checks (`running`: the sensor starts RUNNING); `resources`
    when the feed's own (its watched location, its settings) are not provided elsewhere."""
    return return_pipeline(feed).defs(running, resources)
