"""What the UI shows about each vendor asset, set in one place when the definitions load, so it
says what happens for the environment being loaded:

- **kinds** of each `_delivery` asset: the kind of the vendor's configured destination
  (`destination_from_env`, resources.py): `local`, `s3`, `gcs`, `azure` or `sftp`; iSpot's is
  `api` only when its API credentials are configured (otherwise it publishes to its destination).
- **code_version** of every vendor asset: the first 12 hex digits of a SHA-256 over the source of
  the vendor's package (`vendors/<vendor>/*.py`: its spec models, SQL and file layout) and of
  `formats/` (the writers every vendor file goes through). It changes exactly when that code
  changes, so the UI marks partitions built by older code. Code outside those folders that
  changes a file's bytes (rare: e.g. `delivery.py`) must bump `CODE_VERSION_EPOCH` by hand.
- **dagster/column_schema** of each vendor's staged asset (the rows a file is made from), from
  the pandera model its spec check enforces (vendors/<vendor>/spec.py), with each field's type,
  rules and description, as spec_docs.py renders them for the README.
- **descriptions** with angle brackets made safe for the UI's Markdown (core/markdown.py).
"""

import hashlib
from functools import lru_cache
from pathlib import Path

import dagster as dg

from .core.markdown import ui_text
from .validation.describe import check_text as _check

CODE_VERSION_EPOCH = "1"  # bump by hand when shared code outside the hashed folders changes a file's bytes
PACKAGE = Path(__file__).resolve().parent

@lru_cache(maxsize=None)
def code_version(vendor: str) -> str:
    digest = hashlib.sha256(CODE_VERSION_EPOCH.encode())
    for path in sorted([*(PACKAGE / "vendors" / vendor).glob("*.py"), *(PACKAGE / "formats").glob("*.py")]):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def destination_kind(vendor, resources: dict) -> str:
    """The kind of the vendor's configured destination (a vendor may say otherwise: iSpot's API)."""
    own = vendor.extras.get("destination_kind")
    kind = own(resources) if own else None
    destination = resources.get(vendor.destination_key)
    return kind or (getattr(destination, "kind", None) or "local").lower()


def staged_models(vendor) -> dict:
    """Staged asset name -> the pandera model its rows follow: each deliverable's, and the returns'."""
    models = {d.staged: d.models[0] for d in vendor.deliverables if d.staged and d.models}
    return {**models, **vendor.extras.get("staged_models", {})}


def column_schema(model) -> dg.TableSchema:
    columns = []
    for name, column in model.to_schema().columns.items():
        rules = [_check(c) for c in column.checks]
        columns.append(
            dg.TableColumn(
                name,
                str(column.dtype),
                description=ui_text(column.description or column.title or ""),
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable),
                    unique=bool(column.unique),
                    other=[ui_text(r) for r in rules] + ([] if column.required else ["optional column"]),
                ),
            )
        )
    return dg.TableSchema(columns=columns)


def present(vendor, assets: list, resources: dict) -> list:
    """The vendor's assets with kinds, code versions, column schemas and safe descriptions."""
    out, models = [], staged_models(vendor)
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition) or not asset.is_executable:
            out.append(asset)
            continue

        def mapped(spec: dg.AssetSpec) -> dg.AssetSpec:
            prefix, name = spec.key.path[0], spec.key.path[-1]
            if prefix != vendor.name:
                return spec
            changes: dict = {"code_version": code_version(vendor.name), "description": ui_text(spec.description)}
            if name.endswith("_delivery"):
                changes["kinds"] = {destination_kind(vendor, resources)}
            metadata = {}
            if name in models:
                metadata["dagster/column_schema"] = column_schema(models[name])
            spec = spec.replace_attributes(**changes)
            return spec.merge_attributes(metadata=metadata) if metadata else spec

        out.append(asset.map_asset_specs(mapped))
    return out
