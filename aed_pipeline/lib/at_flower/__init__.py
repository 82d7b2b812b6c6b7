"""The aT flower auction results (화훼유통정보 ``returnData.api?kind=f001``): each sale date's settled
prices of the 양재 화훼공판장, kept as served and normalised. One module per stage (see CONTRIBUTING.md)."""

#: The source's name: its key in ``sync_runs`` and ``rejected_records``, and its folder in the raw archive.
SOURCE_NAME = "at_flower"
