"""The aT flower auction sync (group ``flowers``): one daily partition per sale date (KST).

``flower_auction_raw`` (API → raw archive) → ``public_bidding_flowers`` (rows as served) →
``flower_auction_validated`` (typed, rejected rows quarantined, blocking checks) →
``flower_types`` / ``flowers`` / ``bidding_flowers``. The logic lives in ``aed_pipeline.lib.at_flower``;
these modules wire it into Dagster.
"""
