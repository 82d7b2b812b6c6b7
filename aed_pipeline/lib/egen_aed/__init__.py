"""The e-gen AED registry (국립중앙의료원, data.go.kr ``AEDInfoInqireService``): a full national snapshot
a day, no change cursor; kept in ``aed_data`` with its history. One module per stage (see CONTRIBUTING.md)."""

#: The source's name: its key in ``sync_runs`` and ``rejected_records``, and its folder in the raw archive.
SOURCE_NAME = "egen_aed"
