"""delivery_platform: daily, spec-checked vendor file deliveries from a DuckDB warehouse (Dagster)."""

import warnings

from dagster import PreviewWarning

# Partitioned asset checks are a preview in Dagster 1.13 (shared/DAGSTER-NOTES.md); used knowingly.
warnings.filterwarnings("ignore", category=PreviewWarning)
