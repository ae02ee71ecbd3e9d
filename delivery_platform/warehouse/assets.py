"""The warehouse's source tables as Dagster assets (group `warehouse`) with column schemas."""

from __future__ import annotations

import dagster as dg

from ..core.markdown import ui_text
from .schema import TABLES, SourceTable


def source_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", table])


def _spec(table: SourceTable) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=source_key(table.name),
        group_name="warehouse",
        description=ui_text(table.description),
        kinds={"duckdb"},
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(c.name, c.type, description=ui_text(c.description)) for c in table.columns]),
            "dagster/table_name": f"warehouse.main.{table.name}",
        },
    )


SOURCE_SPECS = [_spec(t) for t in TABLES]
