"""Plain logic, testable without Dagster: API clients, parsers, warehouse, archive."""
