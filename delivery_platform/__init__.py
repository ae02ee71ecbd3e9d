"""delivery_platform: daily, spec-checked vendor file deliveries from a DuckDB warehouse (Dagster)."""
