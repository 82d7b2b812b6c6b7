"""How every run of the code location executes its steps: in one process, like the sync jobs.

The jobs name the in-process executor themselves; this is the default for everything else, above
all Dagster's implicit asset job (``__ASSET_JOB``), which runs what is materialised from the asset
graph or a catalog page in the UI. Its own default, a process per step, costs seconds per step
on these machines (DESIGN §9) for chains that are strictly sequential anyway.
"""

import dagster as dg


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=dg.in_process_executor)
