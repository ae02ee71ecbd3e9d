"""One deliverable factory: stage -> spec check -> files -> file check -> delivery, from a description.

A `Chain` says what a vendor's document says about one daily file set: the SQL of the day's rows,
the pandera model they must pass, how the files are written and re-read, and any rule around the
delivery. `build_chain` turns it into the assets, the blocking checks, the retry policy and the
delivery step; `build_jobs` gives each daily job and its schedule. Every step reads the same
staging folders (`WarehouseResource.staged_table` / `files_dir`), so the factory, not the vendor,
owns where things are kept and how they reach the ledger and the destination.

Resources are named per vendor (`<vendor>_destination`, `<vendor>_settings`), so the steps declare
them as `required_resource_keys` and read them from the context.
"""


import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import dagster as dg

from .checked import forget_checked, profile_measures, read_checked, span_measures, write_checked
from .delivery import DeliveryConfig, DeliveryOutcome, OutgoingFile, deliver_partition
from .ledger import Ledger
from .manifest import files_metadata, read_manifest, write_manifest
from .partitions import daily
from .registry import Deliverable, Schedule, daily_schedule
from .validation import check_result, validate_parquet, validate_relation
from .validation.report import FILES_REMEDY, with_next_step
from .warehouse.assets import source_key
from .warehouse.resource import WarehouseResource, copy_to_parquet


def delivery_retry_policy() -> dg.RetryPolicy:
    """The retry policy of every `_delivery` asset: bounded, exponential backoff.

    `DELIVERY_RETRY_MAX` (default 3) and `DELIVERY_RETRY_DELAY_SECONDS` (default 30; the test suite
    sets 0) are read when the definitions are built (`build_defs`), never at import.
    """
    return dg.RetryPolicy(max_retries=int(os.environ.get("DELIVERY_RETRY_MAX", "3")),
                          delay=float(os.environ.get("DELIVERY_RETRY_DELAY_SECONDS", "30")),
                          backoff=dg.Backoff.EXPONENTIAL)


@dataclass
class Step:
    """What a chain's hooks are given: the running step and the partition's places."""

    context: Any  # AssetExecutionContext or AssetCheckExecutionContext
    chain: "Chain"
    warehouse: WarehouseResource

    @property
    def partition_key(self) -> str:
        return self.context.partition_key

    @property
    def log(self):
        return self.context.log

    @property
    def settings(self):
        key = self.chain.settings_key
        return getattr(self.context.resources, key) if key else None

    @property
    def ledger(self) -> Ledger:
        return self.context.resources.ledger.get()

    @property
    def destination(self):
        return getattr(self.context.resources, self.chain.destination_key)

    @property
    def staged(self) -> Path:
        return self.warehouse.staged_table(self.chain.vendor, self.chain.name, self.partition_key)

    @property
    def stage_dir(self) -> Path:
        return self.warehouse.stage_dir(self.chain.vendor, self.chain.name, self.partition_key)

    @property
    def checked(self) -> dict | None:
        """What the partition's last spec check saw (checked.py), None if its rows were never checked."""
        return read_checked(self.stage_dir)

    @property
    def files_dir(self) -> Path:
        return self.warehouse.files_dir(self.chain.vendor, self.chain.name, self.partition_key)

    def fail(self, message: str) -> dg.Failure:
        """A permanent failure naming the deliverable and partition (a retry would get the same)."""
        return dg.Failure(f"{self.chain.deliverable.label} {self.partition_key}: {message}", allow_retries=False)


@dataclass
class Files:
    """What a chain's `write` returns: the files in delivery order and what the manifest keeps."""

    outgoing: list[OutgoingFile]
    manifest: dict = field(default_factory=dict)  # kept beside the files for the check and delivery
    metadata: dict = field(default_factory=dict)  # shown on the files asset
    reused: bool = False  # the files already built for this partition stand (nothing rewritten)


@dataclass(frozen=True)
class Chain:
    """One deliverable's chain, as its vendor's document describes it."""

    deliverable: Deliverable
    write: Callable[[Step, Path], Files]  # (step, staged rows) -> the files, written under step.files_dir
    # the files read back: problems ([] when they match), or the whole check result
    check_files: Callable[[Step, list[OutgoingFile], dict], Any]
    extract: Optional[Callable[[Step], str]] = None  # the SQL of the partition's rows, in the vendor's names
    # instead of `extract`: stage the rows at step.staged itself -> (row count, metadata)
    stage: Optional[Callable[[Step], tuple[int, dict]]] = None
    sources: tuple = ()  # warehouse tables read besides the deliverable's source
    rows_asset: Optional[str] = None  # default: the deliverable's name
    files_asset: Optional[str] = None  # default: `<name>_files`
    files_check: str = "files_match_spec"
    settings_key: Optional[str] = None  # default `<vendor>_settings`
    schema: Optional[Callable[[Step], Any]] = None  # default: the deliverable's first model
    judge_rows: Optional[Callable[[Step, Any, dg.AssetCheckResult], dg.AssetCheckResult]] = None  # extra rules
    before_delivery: Optional[Callable[[Step, list[OutgoingFile]], None]] = None
    after_delivery: Optional[Callable[[Step, list[OutgoingFile], DeliveryOutcome], dict]] = None  # -> metadata
    # instead of the plain delivery: (step, files, manifest info, redeliver) -> (outcome, metadata)
    deliver: Optional[Callable[[Step, list[OutgoingFile], dict, bool], tuple[DeliveryOutcome, dict]]] = None
    rows_checks: Sequence[Callable[[dg.AssetsDefinition], dg.AssetChecksDefinition]] = ()
    delivery_checks: Sequence[Callable[[dg.AssetsDefinition], dg.AssetChecksDefinition]] = ()
    partitions_def: dg.PartitionsDefinition = daily
    redact: bool = False  # the rows hold personal data: samples in check results are masked
    rows_kinds: frozenset = frozenset({"duckdb"})
    files_kinds: frozenset = frozenset()
    delivery_kinds: frozenset = frozenset()  # shown until presentation.py sets the configured store's kind
    extra_resources: frozenset = frozenset()  # resources every step may read besides the shared ones
    # the rows are not staged as Parquet but read where they lie: the SQL of the rows the spec check
    # validates, run with the warehouse attached (iSpot: its sorted copy cost more than the check)
    rows_relation: Optional[Callable[[Step], str]] = None
    # aggregates over the checked rows that later steps need, taken in the spec check's pass (checked.py)
    spec_measures: Optional[Callable[[Step], dict[str, str]]] = None
    files_checks: Sequence[Callable[[dg.AssetsDefinition], dg.AssetChecksDefinition]] = ()
    descriptions: dict = field(default_factory=dict)  # rows / spec / files / files_check / delivery
    rows_metadata: Optional[Callable[[Step, int], dict]] = None

    @property
    def vendor(self) -> str:
        return self.deliverable.vendor

    @property
    def name(self) -> str:
        return self.deliverable.name

    @property
    def destination_key(self) -> str:
        return f"{self.vendor}_destination"

    def keys(self) -> tuple[list[str], list[str], list[str]]:
        return ([self.vendor, self.rows_asset or self.name], [self.vendor, self.files_asset or f"{self.name}_files"],
                [self.vendor, f"{self.name}_delivery"])


def build_chain(chain: Chain) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The rows, files and delivery assets of one deliverable, with their blocking checks."""
    vendor, d = chain.vendor, chain.deliverable
    settings_key = chain.settings_key if chain.settings_key is not None else f"{vendor}_settings"
    chain = replace(chain, settings_key=settings_key)
    rows_key, files_key, delivery_key = chain.keys()
    text = chain.descriptions.get
    with_settings = {settings_key} if settings_key else set()
    part = chain.partitions_def

    @dg.asset(key=rows_key, group_name=vendor, partitions_def=part,
              deps=[source_key(t) for t in dict.fromkeys((*chain.sources, d.source))],
              kinds=set(chain.rows_kinds), pool=vendor,
              required_resource_keys={"warehouse", *with_settings, *({"ledger"} if chain.stage else ()),
                                      *chain.extra_resources},
              description=text("rows", f"{d.label}: the partition's rows from `{d.source}`."))
    def rows(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        step = Step(context, chain, context.resources.warehouse)
        forget_checked(step.stage_dir)  # new rows: what the last check saw no longer holds
        if chain.stage:
            count, extra = chain.stage(step)
        else:
            sql = chain.extract(step)
            with step.warehouse.connect() as con:
                count = copy_to_parquet(con, sql, step.staged)
            context.log.info(f"{d.label} {step.partition_key}: {count:,} rows staged")
            extra = chain.rows_metadata(step, count) if chain.rows_metadata else {}
        return dg.MaterializeResult(metadata={"dagster/row_count": dg.MetadataValue.int(count),
                                              "rows": dg.MetadataValue.int(count), **extra})

    @dg.asset_check(asset=rows, name="spec", blocking=True, partitions_def=part, pool=vendor,
                    required_resource_keys={"warehouse", *with_settings, *chain.extra_resources},
                    description=text("spec", "The pandera model of the vendor's file "
                                             f"(vendors/{vendor}/spec.py)."))
    def rows_spec(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        step = Step(context, chain, context.resources.warehouse)
        schema = chain.schema(step) if chain.schema else d.models[0]
        name = f"{vendor} {rows_key[-1]} {step.partition_key}"
        extra = chain.spec_measures(step) if chain.spec_measures else {}

        def measures(columns: list[str]) -> dict[str, str]:  # one pass: the rules and what later steps need
            return {**profile_measures(columns), **span_measures(d.event_column, columns), **extra}

        # bounded memory (uniqueness spills); the warehouse attached only for rows read where they lie
        with step.warehouse.connect(attach_warehouse=chain.rows_relation is not None) as con:
            report = (validate_relation(con, chain.rows_relation(step), schema, redact=chain.redact, name=name,
                                        measures=measures) if chain.rows_relation else
                      validate_parquet(step.staged, schema, redact=chain.redact, con=con, name=name,
                                       measures=measures))
        if not report.passed:
            context.log.error(report.error_text(f"{vendor}/{rows_key[-1]} {step.partition_key}"))
        result = check_result(report)
        result = chain.judge_rows(step, report, result) if chain.judge_rows else result
        # the verdict as judged (row limits, opt-outs): the files step builds only from rows that passed
        write_checked(step.stage_dir, rows=report.rows, passed=result.passed, measured=report.measures,
                      event_column=d.event_column)
        return result

    @dg.asset(key=files_key, group_name=vendor, partitions_def=part, deps=[rows], kinds=set(chain.files_kinds),
              pool=vendor, required_resource_keys={"warehouse", "ledger", *with_settings, *chain.extra_resources},
              description=text("files", f"{d.label}: the partition's files."))
    def files(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        step = Step(context, chain, context.resources.warehouse)
        # the UI can materialize the files alone, which runs no check of the rows: they must have passed
        # their blocking spec check since they were staged (a failed check writes its verdict too)
        checked = step.checked
        if not checked or not checked["passed"]:
            raise step.fail(f"the staged rows have not passed their spec check since they were staged: "
                            f"materialize {'/'.join(rows_key)} with its checks (the daily job does) before its "
                            "files. Nothing was written.")
        made = chain.write(step, step.staged)
        if not made.reused:
            write_manifest(step.files_dir, made.outgoing, partition=step.partition_key, **made.manifest)
        return dg.MaterializeResult(metadata={**files_metadata(made.outgoing), **made.metadata})

    @dg.asset_check(asset=files, name=chain.files_check, blocking=True, partitions_def=part, pool=vendor,
                    required_resource_keys={"warehouse", *with_settings, *chain.extra_resources},
                    description=text("files_check", "Reads every file back: the checked rows, in the vendor's "
                                                    "layout."))
    def files_match(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        step = Step(context, chain, context.resources.warehouse)
        outgoing, info = read_manifest(step.files_dir)
        problems = chain.check_files(step, outgoing, info)
        if isinstance(problems, dg.AssetCheckResult):
            return problems
        return dg.AssetCheckResult(
            passed=not problems,
            description=with_next_step("; ".join(problems), FILES_REMEDY) if problems else
            f"{len(outgoing)} file(s) match the spec",
            metadata={"files_checked": len(outgoing)})

    @dg.asset(key=delivery_key, group_name=vendor, partitions_def=part, deps=[files], pool=vendor,
              retry_policy=delivery_retry_policy(), kinds=set(chain.delivery_kinds) or None,
              required_resource_keys={"warehouse", "ledger", chain.destination_key, *with_settings,
                                      *chain.extra_resources},
              description=text("delivery", f"Publishes the files to `{chain.destination_key}`; the ledger makes "
                                           "re-runs send nothing twice."))
    def delivery(context: dg.AssetExecutionContext, config: DeliveryConfig) -> dg.MaterializeResult:
        step = Step(context, chain, context.resources.warehouse)
        outgoing, info = read_manifest(step.files_dir)
        if chain.before_delivery:
            chain.before_delivery(step, outgoing)
        if chain.deliver:  # (None, metadata) when there was nothing to send
            outcome, extra = chain.deliver(step, outgoing, info, config.redeliver)
        else:
            outcome = deliver_partition(context, deliverable=d, files=outgoing, destination=step.destination,
                                        ledger=step.ledger, redeliver=config.redeliver)
            extra = {}
        if chain.after_delivery and outcome is not None:
            extra = {**extra, **chain.after_delivery(step, outgoing, outcome)}
        shown = outcome.metadata() if outcome is not None else {}
        return dg.MaterializeResult(metadata={**shown, "target": dg.MetadataValue.text(
            step.destination.describe()), **extra})

    checks = [rows_spec, *(make(rows) for make in chain.rows_checks), files_match,
              *(make(files) for make in chain.files_checks), *(make(delivery) for make in chain.delivery_checks)]
    return [rows, files, delivery], checks


def build_jobs(vendor: str, chains: Sequence[Chain], env: str, *, description: str = "",
               exclude: dg.AssetSelection | None = None) -> tuple[list, list]:
    """One daily job per `Deliverable.job` with its schedule (the first of its deliverables' that has one).

    The vendor's main job (`<vendor>_daily_delivery`) is the vendor's group less the assets of its
    other jobs and `exclude` (return feeds, which their sensors run); another job is its chains."""
    jobs, schedules = [], []
    main = f"{vendor}_daily_delivery"
    for name in dict.fromkeys(c.deliverable.job_name for c in chains):
        mine = [c for c in chains if c.deliverable.job_name == name]
        others = [dg.AssetKey(k) for c in chains if c.deliverable.job_name != name for k in c.keys()]
        if name == main:
            selection = dg.AssetSelection.groups(vendor) - dg.AssetSelection.assets(*others)
        else:
            selection = dg.AssetSelection.assets(*[dg.AssetKey(k) for c in mine for k in c.keys()])
        if exclude is not None:
            selection = selection - exclude
        when = next((c.deliverable.schedule for c in mine if c.deliverable.schedule), None) or Schedule(6)
        when = when() if callable(when) else when  # a schedule that follows a setting is read now
        job = dg.define_asset_job(name, selection=selection, tags={"vendor": vendor},
                                  description=(description if name == main and description else
                                               f"The day's {', '.join(c.name for c in mine)} for {vendor}."))
        jobs.append(job)
        schedules.append(daily_schedule(job, name.replace("_daily_delivery", "_daily_schedule"), when, env))
    return jobs, schedules


def build_deliverables(chains: Sequence[Chain]) -> tuple[list, list]:
    """The assets and checks of several chains."""
    assets, checks = [], []
    for chain in chains:
        a, c = build_chain(chain)
        assets += a
        checks += c
    return assets, checks


__all__ = ["Chain", "Files", "Step", "build_chain", "build_deliverables", "build_jobs", "delivery_retry_policy"]
