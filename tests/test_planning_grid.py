"""The config's `control.horizon_s` and `control.step_s` (contract section 5: planning horizon) shape the
daemon's plans: from a tick 100 s after a step boundary, the first step runs to the next boundary, then
whole steps, to the first boundary at or after the horizon's end; one plan column per step."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fault_harness import start_run
from tests.scenarios import small_site


@pytest.mark.parametrize(("horizon_s", "step_s", "first_s", "steps", "span_s"), [
    (7200, 300, 200.0, 25, 7400.0),  # 200 s, then 24 x 300 s: to 7500 s after the boundary, the first past 7300
    (3600, 600, 500.0, 7, 4100.0),  # 500 s, then 6 x 600 s: to 4200 s, the first boundary past 3700
    (86400, 900, 800.0, 97, 86400.0 + 800.0),  # the defaults: 800 s, then 96 quarter hours
])
async def test_horizon_and_step_from_the_config_shape_the_plan(horizon_s: int, step_s: int, first_s: float,
                                                               steps: int, span_s: float) -> None:
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=130.0, hours=30)  # starts on a quarter hour
    run = await start_run(sc, None, strategy="mpc", plan_in_thread=False, horizon_s=horizon_s, step_s=step_s,
                          solver_time_limit_ms=5000.0)
    try:
        run.clock.set(run.clock.now() + 100.0)
        await run.tick(1)
        planner = run.daemon.loop.controller.planner
        assert planner is not None and planner.plan is not None and planner.plan.status == "optimal"
        t0 = planner.plan_t0_s
        lengths = np.diff(np.r_[t0, planner.plan_step_end_s])
        assert lengths[0] == pytest.approx(first_s) and np.allclose(lengths[1:], step_s)
        assert len(lengths) == steps and planner.plan_step_end_s[-1] - t0 == pytest.approx(span_s)
        assert planner.plan.power_kw.shape == (4, steps)
    finally:
        await run.close()
