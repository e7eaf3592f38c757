"""pytest fixtures that run the simulator in process on a free port.

Loaded by `tests/conftest.py` (`pytest_plugins = ["simulator_fixtures"]`). The fixtures use
a frozen clock (`time_scale=0`): the data only changes through `sim.advance(seconds)`.
Long-poll is off by default, so a running execution is answered at once instead of after the
client's long-poll timeout; tests of long-polling ask for `long_poll=True`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipelines.simulator.faults import FaultConfig
from pipelines.simulator.server import Simulator, SimulatorConfig

#: Defaults of the fixtures' instances: small, frozen, deterministic, no long-poll wait.
FIXTURE_DEFAULTS: dict[str, Any] = {
    "executions": 200,
    "seed": 42,
    "time_scale": 0.0,
    "long_poll": False,
}


def start_simulator(**config: Any) -> Simulator:
    """A started simulator: `FIXTURE_DEFAULTS` overridden by `config` (SimulatorConfig fields;
    `faults` may be a `FaultConfig` or a dict of its fields). The caller stops it."""
    faults = config.pop("faults", None)
    if isinstance(faults, dict):
        faults = FaultConfig(**faults)
    settings = {**FIXTURE_DEFAULTS, **config, "faults": faults or FaultConfig()}
    return Simulator(SimulatorConfig(**settings)).start()


@pytest.fixture
def simulator_factory() -> Iterator[Callable[..., Simulator]]:
    """A function `make(**config) -> Simulator` returning started simulators.

    Keyword arguments are `SimulatorConfig` fields; `faults` may be a `FaultConfig` or a dict of
    its fields. Every simulator made is stopped when the test ends.
    """
    started: list[Simulator] = []

    def make(**config: Any) -> Simulator:
        simulator = start_simulator(**config)
        started.append(simulator)
        return simulator

    yield make
    for simulator in started:
        simulator.stop()


@pytest.fixture
def simulator(simulator_factory: Callable[..., Simulator]) -> Simulator:
    """A started simulator with 200 generated executions (seed 42), a frozen clock and
    long-poll on (the simulator's own default, which tests/test_simulator.py checks)."""
    return simulator_factory(long_poll=True)
