"""`youxu sim study`: many transformers, several strategies, on Ray (contract section 10).

One Ray task per site and strategy (`youxu.sim.study_tasks.run_site`: generate the site's
scenario, run it, search its hosting capacity). Results go to `DIR/results.parquet` as tasks
finish (every `FLUSH_S` at most, atomically), so a study that is stopped keeps what it had; a
rerun reads the file back and runs only the tasks whose row is missing or was computed from
another site row or other parameters (`task_key`). A task that fails (or a row that does not
parse) is reported in `DIR/failures.json` and `summary.md` and the others go on; a rerun tries
it again. At the end `summary.md` and the plots of hosting capacity and peak reduction across
sites, per strategy.

Ray: a local instance of at most `LOCAL_CPUS` CPUs and a small object store by default (shut down
at the end), or an existing cluster with `--ray-address` (every node needs youxu installed).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from youxu.config.errors import UserError
from youxu.sim.progress import ProgressBar
from youxu.sim.study_tasks import SiteRow, StudyParams, read_sites, run_site, task_key

INSTALL_HINT = "sim study needs Ray and pyarrow: pip install 'youxu[study]'"
LOCAL_CPUS = 2
OBJECT_STORE_BYTES = 200 * 1024 ** 2
FLUSH_S = 5.0
CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.5
RESULTS = "results.parquet"
FAILURES = "failures.json"
SUMMARY = "summary.md"
PLOTS = ("hosting_capacity.png", "peak_reduction.png")

# results columns besides the youxu.kpis/1 fields, with their Arrow type names
STRING_COLUMNS = {"format", "strategy", "scenario", "site_id", "preset", "season", "task_key"}
INT_COLUMNS = {"sessions_total", "sessions_fully_served", "limit_violation_steps", "plan_fallbacks", "max_evs",
               "hosting_runs", "households", "piles", "seed", "days", "step_s"}


@dataclass(frozen=True)
class Task:
    row: SiteRow
    strategy: str
    key: str


@dataclass
class Failure:
    site_id: str
    strategy: str | None
    line: int
    error: str

    def to_json(self) -> dict:
        return {"site_id": self.site_id, "strategy": self.strategy, "line": self.line, "error": self.error}


@dataclass
class StudyOutcome:
    tasks_total: int
    tasks_kept: int
    tasks_run: int
    rows: list[dict]
    failures: list[Failure] = field(default_factory=list)
    wall_s: float = 0.0


def require_study_packages() -> None:
    """UserError (exit 2) with the install line when Ray or pyarrow is missing."""
    for name in ("ray", "pyarrow"):
        try:
            __import__(name)
        except ImportError:
            raise UserError(INSTALL_HINT) from None


# ---- the results file ----------------------------------------------------------
def arrow_schema(rows: Iterable[dict]) -> Any:
    import pyarrow as pa

    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    return pa.schema([(n, pa.string() if n in STRING_COLUMNS else pa.int64() if n in INT_COLUMNS else pa.float64())
                      for n in names])


def write_results(path: Path, rows: list[dict]) -> None:
    """All rows to `path` at once (a temporary file, then renamed): a reader never sees half a file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(rows, key=lambda r: (r["site_id"], r["strategy"]))
    table = pa.Table.from_pylist(rows, schema=arrow_schema(rows))
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_results(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    if not path.exists():
        return []
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # a damaged file is the user's to remove, not a traceback
        raise UserError(f"{path}: not a results file this command can resume from ({exc}); remove it to start "
                        "again") from None


# ---- Ray -------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address: str | None) -> Any:
    """Connect to the cluster at `address`, or start a small local instance; disconnect (and stop it) after."""
    import logging

    import ray

    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        check_reachable(address)
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=max(1, min(LOCAL_CPUS, os.cpu_count() or 1)), include_dashboard=False,
                      object_store_memory=OBJECT_STORE_BYTES)
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(f"--ray-address: cannot connect to Ray at {address!r} ({exc})" if address
                        else f"cannot start a local Ray instance ({exc})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """UserError unless something accepts a TCP connection at a `host:port` (or `ray://host:port`) address:
    Ray itself waits minutes for a cluster that is not there. `auto` (a cluster on this node) is Ray's to find."""
    import socket

    hostport = address.removeprefix("ray://")
    if hostport == "auto":
        return
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--ray-address: {address!r} is not host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"--ray-address: no Ray cluster at {address} ({exc.strerror or exc})") from None


def _error_text(exc: BaseException) -> str:
    """The failing task's own exception, in one line (not Ray's wrapping with the remote traceback)."""
    cause = getattr(exc, "cause", None)
    inner = cause if isinstance(cause, BaseException) else exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}".strip()


def run_tasks(ray: Any, tasks: list[Task], params: StudyParams, on_row: Callable[[dict], None],
              on_failure: Callable[[Task, str], None], progress: Callable[[int, int], None]) -> None:
    """Every task on Ray, one CPU each; each result or failure handed on as soon as it is in."""
    remote = ray.remote(num_cpus=1, max_retries=1)(run_site)
    pending = {remote.remote(t.row, t.strategy, params): t for t in tasks}
    done = 0
    progress(0, len(tasks))
    while pending:
        # whatever finished within the poll (one list of the pending per poll, not per task: studies are long)
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
        for ref in ready:
            task = pending.pop(ref)
            try:
                row = ray.get(ref)
            except Exception as exc:  # one site's failure is reported, the others go on
                on_failure(task, _error_text(exc))
            else:
                on_row(row)
            done += 1
        progress(done, len(tasks))


def run_study(sites: Path, strategies: list[str], out: Path, params: StudyParams, ray_address: str | None = None,
              progress: ProgressBar | None = None) -> StudyOutcome:
    """Run (or resume) the study into `out`; return what was kept, run and failed."""
    t0 = time.perf_counter()
    rows, bad = read_sites(sites)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    tasks = [Task(r, s, task_key(r, s, params)) for r in rows for s in strategies]
    wanted = {t.key for t in tasks}
    kept = {r["task_key"]: r for r in read_results(results_path) if r.get("task_key") in wanted}
    todo = [t for t in tasks if t.key not in kept]
    failures = [Failure(b.site_id, None, b.line, b.error) for b in bad]
    results = dict(kept)
    bar = progress or ProgressBar("study", quiet=True)
    if todo:
        last_flush = time.monotonic()

        def on_row(row: dict) -> None:
            nonlocal last_flush
            results[row["task_key"]] = row
            if time.monotonic() - last_flush >= FLUSH_S:
                write_results(results_path, list(results.values()))
                last_flush = time.monotonic()

        def on_failure(task: Task, error: str) -> None:
            failures.append(Failure(task.row.site_id, task.strategy, task.row.line, error))
            bar.note(f"{task.row.site_id} {task.strategy}: failed: {error}")

        try:
            with ray_session(ray_address) as ray:
                run_tasks(ray, todo, params, on_row, on_failure, bar)
        finally:  # stopped (Ctrl-C) or not, every row that came in is kept for the rerun
            write_results(results_path, list(results.values()))
    elif results or results_path.exists():
        write_results(results_path, list(results.values()))
    outcome = StudyOutcome(tasks_total=len(tasks), tasks_kept=len(kept), tasks_run=len(todo),
                           rows=sorted(results.values(), key=lambda r: (r["site_id"], r["strategy"])),
                           failures=sorted(failures, key=lambda f: (f.line, f.strategy or "")),
                           wall_s=time.perf_counter() - t0)
    (out / FAILURES).write_text(json.dumps([f.to_json() for f in outcome.failures], indent=2, ensure_ascii=False)
                                + "\n", encoding="utf-8")
    (out / SUMMARY).write_text(summary_markdown(outcome, strategies, params, sites), encoding="utf-8")
    plot_distributions(out, outcome.rows, strategies)
    return outcome


# ---- summary and plots ---------------------------------------------------------
def _quantiles(values: list[float], percent: bool = False) -> str:
    if not values:
        return "—"
    q = np.percentile(np.asarray(values, dtype=float), [10, 50, 90])
    if percent:
        return " / ".join(f"{100 * x:.1f} %" for x in q)
    return " / ".join(f"{x:.3g}" for x in q)


def strategy_summary(rows: list[dict], strategies: list[str]) -> dict[str, dict]:
    out = {}
    for s in strategies:
        mine = [r for r in rows if r["strategy"] == s]
        req = sum(r["energy_requested_kwh"] for r in mine)
        out[s] = {
            "sites": len(mine),
            "max_evs_p50": float(np.median([r["max_evs"] for r in mine])) if mine else None,
            "max_evs_total": int(sum(r["max_evs"] for r in mine)),
            "peak_reduction_p50": float(np.median([r["peak_reduction"] for r in mine])) if mine else None,
            "sites_with_violations": sum(1 for r in mine if r["limit_violation_steps"] > 0),
            "energy_served": sum(r["energy_delivered_kwh"] for r in mine) / req if req > 0 else None,
        }
    return out


def summary_markdown(o: StudyOutcome, strategies: list[str], params: StudyParams, sites: Path) -> str:
    season = params.season or "each preset's own season"
    lines = [f"# Study of {sites.name}", "",
             f"{o.tasks_total} tasks ({len({r['site_id'] for r in o.rows})} sites with results, "
             f"{len(strategies)} strategies), {params.days} day(s), {season}, {params.step_s} s steps: "
             f"{o.tasks_kept} kept from an earlier run, {o.tasks_run} run now, {len(o.failures)} failed.", "",
             "Hosting capacity: the largest fleet (piles following the fleet) with no step over a limit and at least "
             "99 % of the energy served. Peak reduction: 1 - peak / peak of uncontrolled charging of the same site.",
             "", "| strategy | sites | hosted EVs p10 / p50 / p90 | hosted EVs, all sites | peak reduction "
             "p10 / p50 / p90 | sites with violations | energy served |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in strategies:
        mine = [r for r in o.rows if r["strategy"] == s]
        req = sum(r["energy_requested_kwh"] for r in mine)
        served = f"{sum(r['energy_delivered_kwh'] for r in mine) / req:.2%}" if req > 0 else "—"
        reduction = _quantiles([r["peak_reduction"] for r in mine], percent=True)
        lines.append(f"| `{s}` | {len(mine)} | {_quantiles([r['max_evs'] for r in mine])} | "
                     f"{sum(r['max_evs'] for r in mine)} | {reduction} | "
                     f"{sum(1 for r in mine if r['limit_violation_steps'] > 0)} | {served} |")
    if o.failures:
        lines += ["", "## Failures", "", "| line | site | strategy | error |", "|---:|---|---|---|"]
        for f in o.failures:
            lines.append(f"| {f.line} | {f.site_id or '—'} | {f.strategy or 'all'} | {f.error.replace('|', '/')} |")
    lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in PLOTS) + f". Every row: `{RESULTS}`.", ""]
    return "\n".join(lines)


def plot_distributions(out: Path, rows: list[dict], strategies: list[str]) -> None:
    """Across sites, per strategy: hosted EVs per household and peak reduction (box plots with the sites on them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = (
        (PLOTS[0], lambda r: r["max_evs"] / max(r["households"], 1), "hosted EVs per household",
         "hosting capacity across sites"),
        (PLOTS[1], lambda r: 100.0 * r["peak_reduction"], "peak reduction against uncontrolled (%)",
         "peak reduction across sites"),
    )
    rng = np.random.default_rng(0)
    for name, value, ylabel, title in figures:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(strategies) + 2), 4))
        data = [[value(r) for r in rows if r["strategy"] == s] for s in strategies]
        shown = [(i, d) for i, d in enumerate(data) if d]
        if shown:
            ax.boxplot([d for _, d in shown], positions=[i + 1 for i, _ in shown], widths=0.5, showfliers=False)
            for i, d in shown:
                ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(d)), d, s=8, alpha=0.5, color="#1f77b4")
        ax.set_xticks(range(1, len(strategies) + 1), strategies)
        ax.set_xlim(0.4, len(strategies) + 0.6)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} ({len({r['site_id'] for r in rows})} sites)")
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)


def study_cli(sites: Path, strategies: list[str], out: Path, params: StudyParams, ray_address: str | None,
              as_json: bool) -> int:
    """`youxu sim study`: exit 0 when every task has its row, 1 when some failed (the others are written)."""
    require_study_packages()
    bar = ProgressBar("study tasks", quiet=as_json or not sys.stderr.isatty())
    o = run_study(sites, strategies, out, params, ray_address, progress=bar)
    if as_json:
        print(json.dumps({"out": str(out), "tasks_total": o.tasks_total, "tasks_kept": o.tasks_kept,
                          "tasks_run": o.tasks_run, "tasks_failed": len([f for f in o.failures if f.strategy]),
                          "failures": [f.to_json() for f in o.failures],
                          "strategies": strategy_summary(o.rows, strategies), "wall_s": round(o.wall_s, 2)},
                         ensure_ascii=False))
    else:
        print(f"study of {sites}: {o.tasks_total} tasks, {o.tasks_kept} kept, {o.tasks_run} run, "
              f"{len(o.failures)} failed in {o.wall_s:.1f} s -> {out}")
        for s, v in strategy_summary(o.rows, strategies).items():
            if v["sites"]:
                print(f"  {s:<12} {v['sites']:5d} sites  hosted EVs {v['max_evs_total']:7d}  median peak reduction "
                      f"{v['peak_reduction_p50']:.1%}  {v['sites_with_violations']} sites with violations")
    for f in o.failures:
        sys.stderr.write(f"youxu: {sites}: line {f.line} (site {f.site_id or '?'}"
                         f"{', ' + f.strategy if f.strategy else ''}): {f.error}\n")
    return 1 if o.failures else 0
