"""The external interface as /work/shared/CONTRACT.md (v1.1) states it, copied by hand from its text.

Tests assert the product's outputs against these, never against the implementation's own constants:
a key renamed or dropped in the code must fail a test here, not move the expectation with it.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- section 1: command line -------------------------------------------------------------------------
STRATEGIES = ("uncontrolled", "edf", "llf", "mpc", "offline")
BENCH_SOLVE_KEYS = frozenset({"piles", "horizon", "build_ms_p50", "build_ms_p99", "solve_ms_p50", "solve_ms_p99",
                              "total_ms_p50", "total_ms_p99", "status"})
BENCH_LOOP_KEYS = frozenset({"piles", "ticks", "tick_ms_p50", "tick_ms_p99", "deadline_misses", "budget_ms"})
HOSTING_RESULT_KEYS = frozenset({"max_evs", "max_penetration", "steps"})
METER_READ_KEYS = frozenset({"profile", "power_kw", "phase_power_kw", "voltage_v", "current_a", "import_kwh",
                             "export_kwh"})
PILE_READ_KEYS = frozenset({"profile", "status", "power_kw", "energy_kwh", "setpoint_a"})
PILE_STATUSES = frozenset({"available", "connected", "charging", "fault", "unknown"})
USAGE_EXIT_CODE = 2

# ---- section 2: scenario ---------------------------------------------------------------------------
SCENARIO_FORMAT = "youxu.scenario/1"
SCENARIO_KEYS = frozenset({"format", "name", "start", "step_s", "duration_s", "site", "base_load", "tariff", "piles",
                           "sessions", "dispatch"})
SESSION_KEYS = frozenset({"id", "pile", "arrival_s", "departure_s", "energy_kwh", "battery_kwh", "soc_arrival", "v2g",
                          "min_soc", "priority"})
PILE_KEYS = frozenset({"id", "max_kw", "min_kw", "phases", "v2g", "max_discharge_kw"})  # and "phase" when phases == 1
PHASES = ("L1", "L2", "L3")

# ---- section 3: simulator outputs ------------------------------------------------------------------
KPI_FORMAT = "youxu.kpis/1"
# in the contract's order; "format", "strategy" and "scenario" name the run, the rest are its figures
KPI_KEYS = ("format", "strategy", "scenario", "energy_requested_kwh", "energy_delivered_kwh", "unmet_energy_kwh",
            "sessions_total", "sessions_fully_served", "peak_total_kw", "peak_base_kw", "valley_total_kw",
            "peak_to_valley_kw", "limit_violation_steps", "max_violation_kw", "import_cost_yuan",
            "export_revenue_yuan", "v2g_discharged_kwh", "dispatch_max_excess_kw", "dispatch_tracking_rmse_kw",
            "plan_ms_p50", "plan_ms_p99", "plan_fallbacks", "wall_s")
KPI_FIGURES = KPI_KEYS[3:]
KPI_KEYS_V11 = ("ev_cost_yuan",)  # section 6: kpis.json gains it (not in this tree's simulator yet)
KPI_THERMAL_KEYS = ("hotspot_max_c", "top_oil_max_c", "ageing_h")  # section 7, only with site.thermal
PARETO_KEYS = frozenset({"peak_at_same_cost_kw", "cost_at_same_peak_yuan", "peak_gap", "cost_gap"})
FULLY_SERVED_FRACTION = 0.99
VIOLATION_TOLERANCE_KW = 0.1
TIMESERIES_HEADER = "t_s,base_kw,ev_kw,total_kw,limit_kw,import_price"
SCHEDULE_HEADER = "t_s,session_id,pile_id,kw"
SIM_OUTPUT_FILES = ("kpis.json", "timeseries.csv", "schedule.csv", "report.png", "report.html")
COMPARE_FILES = ("compare.json", "compare.md")

# ---- section 4: MQTT -------------------------------------------------------------------------------
TOPIC_PREFIX = "youxu/v1/{site_id}/"


@dataclass(frozen=True)
class Topic:
    name: str  # after the prefix
    direction: str  # "grid->site", "site->grid", "app->site"
    qos: int
    retained: bool


TOPICS = {t.name: t for t in (
    Topic("dispatch", "grid->site", 1, False),
    Topic("dispatch/ack", "site->grid", 1, False),
    Topic("default", "grid->site", 1, True),
    Topic("heartbeat", "grid->site", 0, False),
    Topic("status", "site->grid", 1, True),
    Topic("telemetry", "site->grid", 0, False),
    Topic("piles/{pile_id}/state", "site->grid", 0, True),
    Topic("sessions/{pile_id}/request", "app->site", 1, False),
    Topic("events", "site->grid", 1, False),
)}


def topic(site_id: str, name: str, **parts: str) -> str:
    """The full topic of `name` (a TOPICS key) for a site, e.g. topic("s1", "piles/{pile_id}/state", pile_id="P001")."""
    assert name in TOPICS, name
    return TOPIC_PREFIX.format(site_id=site_id) + name.format(**parts)


ACK_SCHEMA = "youxu.ack/1"
ACK_KEYS = frozenset({"schema", "command_id", "status", "reason", "at", "achieved_kw"})
ACK_FIRST = "received"
ACK_APPLIED = "applied"
ACK_FINAL = frozenset({"completed", "superseded", "cancelled", "expired"})
ACK_REJECTED = "rejected"
ACK_STATUSES = frozenset({ACK_FIRST, ACK_APPLIED, ACK_REJECTED}) | ACK_FINAL
INFEASIBLE = "INFEASIBLE"
REJECTION_REASONS = frozenset({"BAD_SCHEMA", "BAD_SIGNATURE", "TARGET_MISMATCH", "OUT_OF_SEQUENCE", "STALE", "EXPIRED",
                               "UNSUPPORTED"})
DISPATCH_SCHEMA = "youxu.dispatch/1"
STATUS_KEYS = frozenset({"state", "at", "version"})
STATUS_STATES = frozenset({"online", "offline", "safe_mode"})
TELEMETRY_SCHEMA = "youxu.telemetry/1"
TELEMETRY_KEYS = frozenset({"schema", "at", "total_kw", "base_kw", "ev_kw", "phase_kw", "limit_kw", "active_commands",
                            "piles"})
TELEMETRY_PHASES = frozenset({"L1", "L2", "L3"})
TELEMETRY_PILE_COUNTS = frozenset({"charging", "idle", "faulted"})
SESSION_SCHEMA = "youxu.session/1"
SESSION_REQUEST_KEYS = frozenset({"schema", "departure", "energy_kwh", "v2g", "min_soc", "priority"})
