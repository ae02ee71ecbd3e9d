"""delivery_platform: spec-checked daily vendor deliveries from a DuckDB warehouse."""
