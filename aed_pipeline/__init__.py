"""aed_pipeline: the e-gen AED registry and the aT flower auctions, kept in PostgreSQL by Dagster."""
