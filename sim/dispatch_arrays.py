"""A scenario's dispatch commands as the daemon would have them in force, at any times.

The entries are validated with the daemon's own parser, given the windows the daemon's command
book would give them (supersession, cancels: `youxu.controller.grid.commands.replay`) and combined with the
daemon's own arbitration: what the simulator applies is what a site would.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from pydantic import ValidationError

from youxu.config.errors import UserError, format_validation_error
from youxu.controller.grid.arbitration import InForce, dispatch_limits
from youxu.controller.grid.commands import replay
from youxu.controller.grid.dispatch_schema import DispatchCommand
from youxu.controller.gridlink import DispatchLimits
from youxu.sim.scenario import Scenario

DispatchFn = Callable[[np.ndarray], DispatchLimits]


def scenario_commands(sc: Scenario) -> list[InForce]:
    """The scenario's limit and setpoint commands with the time each one's force ends."""
    epoch0 = sc.start.timestamp()
    arrivals: list[tuple[float, DispatchCommand]] = []
    for i, entry in enumerate(sc.dispatch):
        try:
            cmd = DispatchCommand.model_validate_json(json.dumps(entry.command))
        except ValidationError as exc:
            raise UserError(f"dispatch[{i}].command: {format_validation_error(exc)}") from None
        arrivals.append((epoch0 + entry.at_s, cmd))
    return replay(arrivals)


def scenario_dispatch_fn(sc: Scenario) -> DispatchFn:
    """A function epoch times -> DispatchLimits for the scenario's commands."""
    in_force = scenario_commands(sc) if sc.dispatch else []

    def limits(t_s: np.ndarray) -> DispatchLimits:
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        if not in_force:
            return DispatchLimits.none(t.size)
        return dispatch_limits(in_force, t)

    return limits
