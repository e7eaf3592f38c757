"""A local simulator of the Eachlabs Workflows API, for the demo, the tests and the benchmarks.

See "The API simulator" in README.md. Start it from the command line
(`eachlabs-pipeline simulator`) or in process:

    from pipelines.simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(executions=100, seed=7)) as sim:
        ...  # sim.base_url, sim.api_key, sim.execution_ids
"""

from pipelines.simulator.faults import FaultConfig
from pipelines.simulator.server import RequestRecord, Simulator, SimulatorConfig

__all__ = ["FaultConfig", "RequestRecord", "Simulator", "SimulatorConfig"]
