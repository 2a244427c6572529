"""The words of the run report and the comparison table: KPI labels and what each figure and chart means."""

from __future__ import annotations

from youxu.sim.kpis import SERVED_FRACTION, VIOLATION_TOL_KW

KPI_LABELS = {
    "energy_requested_kwh": "Energy requested (kWh)",
    "energy_delivered_kwh": "Energy delivered (kWh)",
    "unmet_energy_kwh": "Unmet energy (kWh)",
    "sessions_total": "Sessions",
    "sessions_fully_served": "Sessions fully served",
    "peak_total_kw": "Peak transformer load (kW)",
    "peak_base_kw": "Peak household load (kW)",
    "valley_total_kw": "Valley transformer load (kW)",
    "peak_to_valley_kw": "Peak-to-valley (kW)",
    "limit_violation_steps": "Steps over a limit",
    "max_violation_kw": "Largest excess (kW)",
    "import_cost_yuan": "Import cost (yuan)",
    "export_revenue_yuan": "Export revenue (yuan)",
    "v2g_discharged_kwh": "V2G discharged (kWh)",
    "ev_cost_yuan": "EV energy cost (yuan)",
    "dispatch_max_excess_kw": "Largest excess over a dispatch limit (kW)",
    "dispatch_tracking_rmse_kw": "Dispatch setpoint tracking RMSE (kW)",
    "plan_ms_p50": "Planning time p50 (ms)",
    "plan_ms_p99": "Planning time p99 (ms)",
    "plan_fallbacks": "Planner fallbacks",
    "wall_s": "Simulation wall time (s)",
}

THERMAL_KPI_LABELS = {  # present when the scenario has site.thermal
    "hotspot_max_c": "Highest winding hot-spot (°C)",
    "top_oil_max_c": "Highest top-oil (°C)",
    "ageing_h": "Insulation ageing (equivalent hours)",
}

PARETO_LABELS = {
    "peak_at_same_cost_kw": "Lowest peak at the same EV cost (kW)",
    "peak_gap": "Peak gap to the front",
    "cost_at_same_peak_yuan": "Lowest EV cost at the same peak (yuan)",
    "cost_gap": "Cost gap to the front",
}

KPI_HELP = {
    "energy_requested_kwh": "What all drivers asked for, summed over the sessions.",
    "energy_delivered_kwh": "What the piles actually delivered (net of any V2G discharge).",
    "unmet_energy_kwh": "Requested energy the cars left without; some requests exceed what the window allows.",
    "sessions_total": "Charging sessions: one car plugged in from arrival to departure.",
    "sessions_fully_served": f"Sessions that got at least {SERVED_FRACTION:.0%} of their request, or of the most "
                             "their pile could deliver in their window if that is less.",
    "peak_total_kw": "Highest transformer load of any step, households and EVs together.",
    "peak_base_kw": "Highest household (non-EV) load: what the transformer carries with no car charging.",
    "valley_total_kw": "Lowest transformer load of any step.",
    "peak_to_valley_kw": "Peak minus valley: smaller means a flatter load, easier on the transformer.",
    "limit_violation_steps": f"Steps where the load exceeded the transformer's import limit or a phase limit by more "
                             f"than {VIOLATION_TOL_KW:g} kW. Zero is the goal.",
    "max_violation_kw": "The largest such excess.",
    "import_cost_yuan": "Energy imported times the time-of-use price of each step.",
    "export_revenue_yuan": "Energy exported to the grid times the export price.",
    "v2g_discharged_kwh": "Energy V2G cars gave back to the site.",
    "ev_cost_yuan": "What the cars' own energy cost: charging at the import price of each step, less V2G discharge "
                    "at the export price. The part of the bill the controller can change.",
    "dispatch_max_excess_kw": "Largest excess over a limit the grid company's dispatch commands set.",
    "dispatch_tracking_rmse_kw": "How closely the load followed a dispatch setpoint (root mean square error); "
                                 "— when no setpoint was sent.",
    "plan_ms_p50": "Median time one decision took.",
    "plan_ms_p99": "99th percentile of the decision time.",
    "plan_fallbacks": "Times the optimiser gave up and the least-laxity-first fallback decided instead.",
    "wall_s": "Wall-clock time the simulation took.",
    "hotspot_max_c": "Hottest the transformer's winding got (IEC 60076-7 model of the load and ambient). Normal "
                     "paper ages at its design rate at 98 °C, twice as fast every 6 K above.",
    "top_oil_max_c": "Hottest the oil at the top of the tank got.",
    "ageing_h": "How much life the winding insulation used, in hours at the design rate (98 °C): a day at 98 °C "
                "is 24 h; less means the transformer aged slower than designed.",
}

CHART_HELP = {
    "load": "<b>Top chart — load at the transformer.</b> Blue is the households' own load, green what the EV piles "
            "drew on top of it, orange (below zero) what V2G cars gave back. The black line is the transformer's "
            "total and the red dashed line the import limit in force: the transformer's own limit, lowered while "
            "the grid company's dispatch commands ask for less. The total should stay under the red line.",
    "dispatch": "<b>Hatched ranges</b> are the times a dispatch command from the grid company was in force: purple "
                "hatching for a limit, blue for a setpoint the EVs were asked to follow (its value is the blue line).",
    "bands": "<b>Background colours</b> are the time-of-use tariff bands: green the cheap valley hours, white the "
             "flat hours, orange the expensive peak hours (red: critical peak). Good control moves charging into "
             "the valley.",
    "price": "<b>Middle chart — import price</b> in yuan per kWh at each step.",
    "thermal": "<b>Transformer temperatures</b> (IEC 60076-7 model of the total load and the ambient): the winding "
               "hot-spot (red) and the top-oil (orange) with their maxima dashed, and the ambient (grey). The "
               "hot-spot should stay under its dashed line; the paper ages twice as fast for every 6 K above 98 °C.",
    "soc": "<b>Bottom chart — state of charge of the V2G cars</b> (cars that may discharge back to the site), one "
           "line per pile while a car is plugged in. It should end high enough for the driver's request and never "
           "go below the driver's minimum.",
    "long": "On long runs each point of the charts stands for several steps: loads and prices are averaged (the "
            "shaded band around the price spans its lowest to highest), the black total shows the highest step and "
            "the red limit the lowest, so peaks and limits stay visible.",
}

SERVED_HELP = (
    "Each bar counts the charging sessions that received that share of the energy they were owed: what the driver "
    "asked for, or the most the pile and car could physically deliver between arrival and departure if that is less. "
    f"A session counts as fully served at {SERVED_FRACTION:.0%} or more (the green bar); red bars are drivers who "
    "left short.")
