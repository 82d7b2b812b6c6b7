"""Definitions shared by both sources: resources, partitions."""
