"""A long run split in time: chunks (a week by default) simulated in parallel, stitched back.

Chunk i keeps the steps of [a_i, b_i). It is simulated from `a_i - warm-up` (a day by default) so
that it reaches a_i from a realistic state: the cars that arrived during the warm-up have charged
as the strategy had them charge, the `mpc` forecast has learnt from the meter history before its
start (the scenario's history and household load of the days before, as a running daemon has them
in its database), and the controller's own state (plans, fairness) has settled. The history goes
back as far as the forecast remembers (`history_days`), so that it has learnt what the forecast of
one long run has learnt by then. A car already plugged in when the warm-up starts enters with what
it has had so far as charged at its full rate from its arrival (capped at its request and
battery), the best guess without the run before. The chunk's scenario goes on after b_i until
every car that arrived before b_i has left, so the controller is told the same departures as in
one long run, but the simulation stops at b_i (`run_scenario(..., until_s=)`): the next chunk
takes over there.

The rows kept are those of [a_i, b_i) of each chunk, in the original scenario's steps, sessions
and piles, so the KPIs are computed on the original scenario as for one run. How close that is to
one sequential run is measured by `youxu bench chunked` (README: long runs split in time).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from youxu.sim.engine import RunResult, run_scenario
from youxu.sim.scenario import PHASES, Scenario

CHUNK_S = 7 * 86400
WARMUP_S = 86400
HISTORY_RESOLUTION_S = 900
HISTORY_WEIGHT_LEFT = 0.005  # a chunk's forecast learns from the days before it until older ones would weigh less


def history_days() -> int:
    """Days of meter history a chunk's forecast gets: the forecast's memory, after which what it learnt from
    older days weighs less than `HISTORY_WEIGHT_LEFT` (each day learnt keeps at most 1 - min_weight of
    the profile before it). Less than that and a chunk's forecast, hence its hedges and plans, are not
    the ones one long run has by then (a week of history moved a 17-day `mpc` run's peak by 0.6 %)."""
    from youxu.scheduler.forecast import ForecastConfig

    keep = 1.0 - ForecastConfig().min_weight
    return math.ceil(math.log(HISTORY_WEIGHT_LEFT) / math.log(keep)) if 0 < keep < 1 else 1


HISTORY_S = history_days() * 86400


@dataclass(frozen=True)
class Chunk:
    index: int
    start_s: int  # first step simulated (warm-up included), s from the scenario's start
    keep_s: int  # first step kept
    stop_s: int  # first step not simulated
    end_s: int  # end of the chunk's scenario (the last departure of its cars)


def _alignment_s(sc: Scenario) -> int:
    """Chunk boundaries fall on steps and on the load and tariff resolutions."""
    res = [sc.step_s, sc.base_load.resolution_s]
    if len(sc.tariff.import_yuan_per_kwh) > 1 or len(sc.tariff.export_yuan_per_kwh or []) > 1:
        res.append(sc.tariff.resolution_s)
    return math.lcm(*res)


def plan_chunks(sc: Scenario, chunk_s: int = CHUNK_S, warmup_s: int = WARMUP_S) -> list[Chunk]:
    """The chunks of `sc`: `chunk_s` each (the last may be shorter), boundaries on `_alignment_s`."""
    if chunk_s <= 0 or warmup_s < 0:
        raise ValueError(f"chunk_s must be positive and warmup_s not negative (got {chunk_s}, {warmup_s})")
    align = _alignment_s(sc)
    chunk_s = max(align, chunk_s // align * align)
    warmup_s = -(-warmup_s // align) * align
    arr = np.array([s.arrival_s for s in sc.sessions], dtype=np.int64)
    dep = np.array([s.departure_s for s in sc.sessions], dtype=np.int64)
    chunks = []
    for i, keep in enumerate(range(0, sc.duration_s, chunk_s)):
        stop = min(keep + chunk_s, sc.duration_s)
        staying = dep[arr < stop]
        end = max(stop, int(staying.max()) if staying.size else stop)
        end = min(-(-end // align) * align, sc.duration_s)
        chunks.append(Chunk(i, max(0, keep - warmup_s), keep, stop, end))
    return chunks


def _slice(values: list[float], resolution_s: int, start_s: int) -> list[float]:
    return values if len(values) == 1 else values[start_s // resolution_s:]


def _history(sc: Scenario, start_s: int) -> dict | None:
    """The meter history before `start_s`: the scenario's history and its household load up to there,
    `HISTORY_S` of it at most."""
    parts = []
    t_h, ph_h = sc.history_phase_kw()
    if t_h.size:
        parts.append((sc.base_load_history.resolution_s, ph_h))
    if start_s > 0:
        bl = sc.base_load
        parts.append((bl.resolution_s, bl.phase_values()[: start_s // bl.resolution_s]))
    if not parts:
        return None
    res = HISTORY_RESOLUTION_S
    if any(res % r for r, _ in parts):
        res = math.gcd(*(r for r, _ in parts))
    blocks = []
    for r, ph in parts:  # means over `res` (each part's values are at a resolution dividing it)
        k = res // r
        n = ph.shape[0] // k * k
        blocks.append(ph[ph.shape[0] - n:].reshape(-1, k, 3).mean(axis=1))
    values = np.concatenate(blocks)[-(HISTORY_S // res):]
    phases = {p: [round(float(x), 3) for x in values[:, i]] for i, p in enumerate(PHASES)}
    return {"resolution_s": res, "phases": phases}


def chunk_scenario(sc: Scenario, ch: Chunk) -> tuple[Scenario, np.ndarray]:
    """The chunk's own scenario (from `ch.start_s` to `ch.end_s`) and the original index of each of its sessions."""
    w = ch.start_s
    raw = sc.model_dump(mode="json", exclude_none=True)
    keep = [i for i, s in enumerate(sc.sessions) if s.departure_s > w and s.arrival_s < ch.stop_s]
    sessions = []
    pile_kw = {p.id: p.max_kw for p in sc.piles}
    for i in keep:
        s = raw["sessions"][i]
        if s["arrival_s"] < w:  # plugged in before the chunk: what it has had so far, at its full rate
            sess = sc.sessions[i]
            rate = min(pile_kw[sess.pile], sess.max_kw or math.inf)
            had = min(sess.energy_kwh, rate * (w - sess.arrival_s) / 3600.0,
                      (1.0 - sess.soc_arrival) * sess.battery_kwh)
            s = {**s, "arrival_s": w, "energy_kwh": round(sess.energy_kwh - had, 6),
                 "soc_arrival": min(1.0, sess.soc_arrival + had / sess.battery_kwh)}
        sessions.append({**s, "arrival_s": s["arrival_s"] - w, "departure_s": s["departure_s"] - w})
    bl, tf = raw["base_load"], raw["tariff"]
    if "kw" in bl:
        bl = {**bl, "kw": _slice(bl["kw"], bl["resolution_s"], w)}
    else:
        bl = {**bl, "phases": {p: _slice(v, bl["resolution_s"], w) for p, v in bl["phases"].items()}}
    tf = {**tf, "import_yuan_per_kwh": _slice(tf["import_yuan_per_kwh"], tf["resolution_s"], w)}
    if raw["tariff"].get("export_yuan_per_kwh"):
        tf["export_yuan_per_kwh"] = _slice(raw["tariff"]["export_yuan_per_kwh"], tf["resolution_s"], w)
    dispatch = [{**d, "at_s": max(0, d["at_s"] - w)} for d in raw.get("dispatch", []) if d["at_s"] < ch.end_s]
    raw.update(name=f"{sc.name}-chunk{ch.index}", start=(sc.start + timedelta(seconds=w)).isoformat(),
               duration_s=ch.end_s - w, base_load=bl, tariff=tf, sessions=sessions, dispatch=dispatch)
    raw.pop("base_load_history", None)
    history = _history(sc, w)
    if history is not None:
        raw["base_load_history"] = history
    return Scenario.model_validate(raw), np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class ChunkRows:
    """What a chunk hands back: its kept rows in the original scenario's steps and sessions."""

    step: np.ndarray
    session: np.ndarray
    pile: np.ndarray
    kw: np.ndarray
    limit_kw: np.ndarray  # the kept steps' limits
    plan_ms: list[float]
    fallbacks: int
    wall_s: float


def run_chunk(sc: Scenario, strategy: str, ch: Chunk) -> ChunkRows:
    sub, originals = chunk_scenario(sc, ch)
    res = run_scenario(sub, strategy, until_s=ch.stop_s - ch.start_s)
    offset = ch.start_s // sc.step_s
    first, last = (ch.keep_s - ch.start_s) // sc.step_s, (ch.stop_s - ch.start_s) // sc.step_s
    kept = (res.sched_step >= first) & (res.sched_step < last)
    return ChunkRows(step=res.sched_step[kept].astype(np.int64) + offset, session=originals[res.sched_session[kept]],
                     pile=res.sched_pile[kept].astype(np.int64), kw=res.sched_kw[kept],
                     limit_kw=res.limit_kw[first:last], plan_ms=res.plan_ms, fallbacks=res.fallbacks,
                     wall_s=res.wall_s)


def stitch(sc: Scenario, strategy: str, chunks: list[Chunk], parts: list[ChunkRows], wall_s: float) -> RunResult:
    """One RunResult of the whole scenario from the chunks' kept rows (by step then pile, as one run's)."""
    step = np.concatenate([p.step for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    session = np.concatenate([p.session for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    kw = np.concatenate([p.kw for p in parts]) if parts else np.zeros(0)
    pile = np.concatenate([p.pile for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    limit_kw = np.zeros(sc.n_steps)
    for ch, p in zip(chunks, parts, strict=True):
        a = ch.keep_s // sc.step_s
        limit_kw[a:a + p.limit_kw.size] = p.limit_kw
    delivered = np.bincount(session, weights=kw, minlength=len(sc.sessions)) * (sc.step_s / 3600.0)
    return RunResult(scenario=sc, strategy=strategy, limit_kw=limit_kw, sched_step=step.astype(np.int32),
                     sched_session=session.astype(np.int32), sched_pile=pile.astype(np.int32), sched_kw=kw,
                     delivered_kwh=delivered, plan_ms=[m for p in parts for m in p.plan_ms],
                     fallbacks=sum(p.fallbacks for p in parts), wall_s=wall_s)


def _run_chunk_job(sc_json: str, strategy: str, ch: Chunk) -> ChunkRows:
    from youxu.sim.scenario import Scenario as _Scenario

    return run_chunk(_Scenario.model_validate_json(sc_json), strategy, ch)


def run_chunked(sc: Scenario, strategy: str, chunk_s: int = CHUNK_S, warmup_s: int = WARMUP_S,
                workers: int | None = None, progress: Callable[[int, int], None] | None = None) -> RunResult:
    """`sc` under `strategy` as chunks in parallel processes (`workers`, default one per core)."""
    t0 = time.perf_counter()
    chunks = plan_chunks(sc, chunk_s, warmup_s)
    workers = max(1, min(len(chunks), workers or os.cpu_count() or 1))
    if workers == 1:
        parts = []
        for i, ch in enumerate(chunks):
            parts.append(run_chunk(sc, strategy, ch))
            if progress is not None:
                progress(i + 1, len(chunks))
    else:
        sc_json = sc.model_dump_json()
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_chunk_job, sc_json, strategy, ch) for ch in chunks]
            parts = []
            for i, f in enumerate(futures):
                parts.append(f.result())
                if progress is not None:
                    progress(i + 1, len(chunks))
    return stitch(sc, strategy, chunks, parts, time.perf_counter() - t0)


COMPARED = ("energy_delivered_kwh", "peak_total_kw", "import_cost_yuan", "unmet_energy_kwh", "sessions_fully_served",
            "limit_violation_steps", "peak_to_valley_kw")


def rel_diff(chunked: float, sequential: float) -> float:
    """(chunked - sequential) / sequential (0 when both are 0, inf when only the sequential one is)."""
    if sequential == 0:
        return 0.0 if chunked == 0 else math.inf
    return (chunked - sequential) / abs(sequential)


def compare_chunked(sc: Scenario, strategy: str, chunk_s: int = CHUNK_S, warmup_s: int = WARMUP_S,
                    workers: int | None = None) -> dict:
    """One sequential run and one chunked run of `sc`: their wall times and KPIs side by side."""
    from youxu.sim.outputs import result_kpis

    seq = run_scenario(sc, strategy)
    chk = run_chunked(sc, strategy, chunk_s, warmup_s, workers)
    ks, kc = result_kpis(seq), result_kpis(chk)
    chunks = plan_chunks(sc, chunk_s, warmup_s)
    return {
        "scenario": sc.name, "strategy": strategy, "days": sc.duration_s / 86400, "piles": len(sc.piles),
        "sessions": len(sc.sessions), "chunks": len(chunks),
        "chunk_days": (chunks[0].stop_s - chunks[0].keep_s) / 86400,
        "warmup_h": (chunks[1].keep_s - chunks[1].start_s) / 3600 if len(chunks) > 1 else 0.0,
        "workers": max(1, min(len(chunks), workers or os.cpu_count() or 1)),
        "sequential_wall_s": round(seq.wall_s, 2), "chunked_wall_s": round(chk.wall_s, 2),
        "kpis": {k: {"sequential": ks[k], "chunked": kc[k], "rel_diff": round(rel_diff(kc[k], ks[k]), 6)}
                 for k in COMPARED},
    }
