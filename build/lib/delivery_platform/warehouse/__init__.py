"""The embedded DuckDB warehouse: source table specs, the seed generator and read access."""
