"""Dagster definitions, one folder per source, loaded by aed_pipeline.definitions."""
