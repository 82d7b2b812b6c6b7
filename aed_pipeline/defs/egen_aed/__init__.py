"""The e-gen AED registry sync."""
