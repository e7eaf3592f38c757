"""Running the load on a schedule: the settings of the scheduled job and what a run reports
(`job.py`, no orchestrator imported), and the Dagster definitions on top (`dagster.py`, which
needs the `.[dagster]` extra). Neither holds load logic: both call `pipelines.load.run_load`.
"""
