"""Kept for ``bench/egen_parse.py``, which imports ``synthetic_aed_page`` from here.

The test helpers live in ``aed_pipeline_tests.support.helpers``; drop this module once the bench
imports from there.
"""

from aed_pipeline_tests.support.helpers import synthetic_aed_page

__all__ = ["synthetic_aed_page"]
