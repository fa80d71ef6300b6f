"""What a sweep will cost, how far along it is, and its answer: the launching process's view.

- :func:`estimate_sweep`: before anything runs, each job's run time and the sweep's wall
  time on its workers (:mod:`mlp_sweeps.plan.cost`, learning from the runs in the store),
  logged as a table, a certainty line and the ``estimate:`` line last;
- :class:`Progress`: while the launcher blocks, a background thread reads the sweep's runs
  from the store every :data:`POLL_S` seconds and shows one line: done / running / to go,
  failures, elapsed and ETA (the estimate, rescaled by the runs that finished and advanced
  by the running ones' epochs). A live tqdm bar on a terminal, a plain log line every
  :data:`PLAIN_EVERY_S` seconds otherwise (CI logs). The workers' own log lines go to
  each job's log file and the store (:func:`quiet_job_overrides`), not to this terminal;
- :func:`report`: when it ends, the comparison table of the sweep's runs, the wall time
  beside the estimate (also logged on the parent run, with the table as its description)
  and the next commands (the MLflow UI and this experiment's runs page, ``mlp-export``).
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from mlp_sweeps.plan.cost.schedule import Estimate
    from mlp_sweeps.claim.ledger import Ledger
    from mlp_sweeps.plan.jobs import Job

log = logging.getLogger(__name__)

POLL_S = 2.0  # the store is read this often while the sweep runs
PLAIN_EVERY_S = 30.0  # a plain progress line this often when the output is not a terminal
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI (Markdown)


# ---------------------------------------------------------------------------------------
# before: the estimate


def estimate_sweep(todo: Sequence[Job], n_workers: int, threads: int | None,
                   runs: Sequence[Any] | None, ladder: tuple[list[int], int] | None = None
                   ) -> Estimate | None:
    """The estimate of the jobs to run, learned from ``runs`` (every run of the experiment,
    as the sweep read them; None if not tracking), logged; None if it cannot be made (said,
    never fatal). With ``ladder`` (an ASHA sweep's rungs and eta), successive halving's
    budget is logged instead (:class:`~mlp_sweeps.plan.cost.schedule.LadderEstimate`), and
    None returned: its jobs are not launched as a list."""
    from mlp_sweeps.plan.cost import schedule as estimate
    from mlp_sweeps.run.job import run_name

    if not todo:
        return None
    try:
        past = None
        if runs is not None:
            from mlp_sweeps.read.results import frame

            past = frame(runs, latest_per_config=False)
        est = estimate.for_jobs([j.config for j in todo], n_workers, past,
                                names=[run_name(j.overrides) for j in todo],
                                hashes=[j.config_hash for j in todo], threads=threads)
    except Exception as e:  # noqa: BLE001 - an estimate must not stop a sweep
        log.warning("No estimate: %s: %s", type(e).__name__, e)
        return None
    if ladder is not None:
        for line in estimate.LadderEstimate(est, *ladder).lines():
            log.info(line)
        return None
    table, *rest = est.lines()
    log.info("Estimate of each job's run time (longest first, as launched):\n%s", table)
    for line in rest:  # how sure, then the ``estimate:`` line
        log.info(line)
    return est


def quiet_job_overrides(config: Any, n_workers: int) -> list[str]:
    """Overrides that keep a job's log lines in its log file (Hydra's ``job_logging``
    ``file`` handler) and off the launching terminal; none if there is no such handler, or
    with one worker (joblib then runs the jobs in the launching process, whose own logging
    the job's would replace: the summary would go to the last job's log file)."""
    from omegaconf import OmegaConf

    if n_workers <= 1 or \
            OmegaConf.select(config, "hydra.job_logging.handlers.file", default=None) is None:
        return []
    return ["hydra.job_logging.root.handlers=[file]"]


# ---------------------------------------------------------------------------------------
# while: the progress line


def _clock(s: float | None) -> str:
    """``1:05`` (minutes:seconds), ``1:02:05`` beyond an hour; ``?`` if unknown."""
    if s is None:
        return "?"
    m, sec = divmod(int(round(max(0.0, s))), 60)
    return f"{m // 60}:{m % 60:02d}:{sec:02d}" if m >= 60 else f"{m}:{sec:02d}"


class Progress:
    """The sweep's progress line while ``with Progress(...):`` blocks (see the module).

    ``todo``: the jobs launched (their config hashes are looked for among the parent's
    runs); ``est``: their estimate (None: ETA from finished runs only); ``ledger``/``parent``:
    where their runs are (None: no store, no line); ``live``: a tqdm bar (default: when
    stdout is a terminal)."""

    def __init__(self, todo: Sequence[Job], ledger: Ledger | None, parent: str | None,
                 est: Estimate | None = None, n_workers: int = 1, live: bool | None = None,
                 poll_s: float = POLL_S, plain_every_s: float = PLAIN_EVERY_S,
                 elsewhere: Sequence[Job] = ()):
        self.hashes = [j.config_hash for j in todo]
        # held by live runs of other launchers, waited for: counted "running elsewhere"
        self.elsewhere: set[str] = {j.config_hash for j in elsewhere}
        self.ledger, self.parent, self.n_workers = ledger, parent, max(1, n_workers)
        self.expected = {j.config_hash: (j.run_s, j.job_s, j.config.epochs)
                         for j in (est.jobs if est is not None else [])}
        self.live = sys.stdout.isatty() if live is None else live
        self.poll_s, self.plain_every_s = poll_s, plain_every_s
        self.t0 = time.perf_counter()
        self.state: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._redirect = None

    def add(self, jobs: Sequence[Job]) -> None:
        """Jobs launched after the start (a search's later rounds)."""
        self.hashes += [j.config_hash for j in jobs if j.config_hash not in self.hashes]

    # the numbers -------------------------------------------------------------------------
    def poll(self) -> dict[str, Any]:
        """Counts, elapsed and ETA from the store now."""
        from mlp_sweeps.claim.ledger import ENDED, LOST, latest_by_config, outcome_of

        latest = latest_by_config(self.ledger.runs(parent=self.parent))
        elsewhere = set(self.elsewhere)
        wide = latest_by_config(self.ledger.runs()) if elsewhere else {}
        counts = dict.fromkeys(("done", "running", "elsewhere", "to go", "failed"), 0)
        real, predicted, remaining, waiting = 0.0, 0.0, [], []
        hashes = self.hashes + sorted(elsewhere.difference(self.hashes))
        for h in hashes:
            r = wide.get(h) if h in elsewhere else latest.get(h)
            run_s, job_s, epochs = self.expected.get(h, (None, None, None))
            st = outcome_of(r) if r is not None else None
            if st in ENDED:
                counts["done"] += 1
                counts["failed"] += st in LOST
                t = r.data.metrics.get("train_time_s")
                if st not in LOST and t is not None and run_s:
                    real, predicted = real + t, predicted + run_s
            elif st == "running":
                counts["elsewhere" if h in elsewhere else "running"] += 1
                done = r.data.metrics.get("epochs_completed", 0.0)
                if job_s is not None:
                    remaining.append(job_s * max(0.0, 1.0 - done / max(1, epochs)))
            else:
                counts["to go"] += 1
                if job_s is not None:
                    waiting.append(job_s)
        scale = real / predicted if predicted > 0 else 1.0
        eta = None
        if self.expected:
            from mlp_sweeps.plan.cost.schedule import schedule

            eta, _ = schedule([s * scale for s in sorted(remaining, reverse=True) + waiting],
                              self.n_workers)
        return {**counts, "total": len(hashes), "elapsed": time.perf_counter() - self.t0,
                "eta": eta, "scale": scale}

    def take_over(self, hashes) -> None:
        """Configurations no longer held elsewhere: run by this sweep from now on."""
        for h in hashes:
            self.elsewhere.discard(h)
            if h not in self.hashes:
                self.hashes.append(h)

    def _counts(self, s: dict[str, Any]) -> str:
        return (f"{s['running']} running, "
                + (f"{s['elsewhere']} running elsewhere, " if s.get("elsewhere") else "")
                + f"{s['to go']} to go, {s['failed']} failed | elapsed {_clock(s['elapsed'])}, "
                f"ETA {_clock(s['eta'])}")

    def line(self, s: dict[str, Any] | None = None) -> str:
        """``sweep: 3/12 done, 2 running, 7 to go, 1 failed | elapsed 0:42, ETA 1:30``
        (``..., 2 running elsewhere, ...`` while it waits for other launchers' runs)."""
        s = s or self.state
        if not s:
            return f"sweep: 0/{len(self.hashes)} done"
        return f"sweep: {s['done']}/{s['total']} done, {self._counts(s)}"

    # the thread ----------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        if self.ledger is None or not (self.hashes or self.elsewhere):
            return self
        if self.live:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()  # log lines print above the bar
            self._redirect.__enter__()
            size = shutil.get_terminal_size((100, 24))  # (a pty may say 0 x 0: tqdm hides)
            self._bar = tqdm(total=len(set(self.hashes) | self.elsewhere), desc="sweep", unit="run",
                             ncols=size.columns, nrows=size.lines,
                             file=sys.stdout,
                             bar_format="{desc}: {bar:20} {n}/{total} done{postfix}")
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        last_plain = time.perf_counter()
        while not self._stop.wait(self.poll_s):
            self._update()
            if not self.live and time.perf_counter() - last_plain >= self.plain_every_s:
                log.info(self.line())
                last_plain = time.perf_counter()

    def _update(self) -> None:
        try:
            self.state = self.poll()
        except Exception as e:  # noqa: BLE001 - a store hiccup must not stop the sweep
            log.debug("progress: could not read the store: %s", e)
            return
        if self._bar is not None:
            s = self.state
            self._bar.n, self._bar.total = s["done"], s["total"]
            self._bar.set_postfix_str(self._counts(s))

    def __exit__(self, *exc) -> bool:
        if self._thread is None:
            return False
        self._stop.set()
        self._thread.join()
        self._update()
        if self._bar is not None:
            self._bar.close()
            self._redirect.__exit__(None, None, None)
        log.info(self.line())  # the last state, once, in the log too
        return False


def log_datasets(ledger: Ledger, parent: str, jobs: Sequence[Job]) -> None:
    """The sweep's datasets as dataset inputs of its parent run (the UI's runs page shows
    the parent rows, its children folded under them)."""
    from mlp_sweeps.run.tracked import dataset_input

    for ds in {dataset_input(j.config)[:2]: dataset_input(j.config) for j in jobs}.values():
        ledger.tracker.log_dataset(parent, *ds)


# ---------------------------------------------------------------------------------------
# after: the answer


# the runs page sorted by test accuracy, best first: sorted by anything but its creation
# time, MLflow's UI lists a sweep's runs as rows of their own instead of folding them
# under their parent (mlflow#15802), so every run shows as the page opens
RUNS_ORDER = "?orderByKey=metrics.%60final_test_acc%60&orderByAsc=false"


def ui_url(uri: str, experiment_id: str, port: int = 5000) -> str:
    """The runs page of an experiment, best run first: on its server, else on ``mlflow
    ui``'s default address."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) \
        else f"http://127.0.0.1:{port}"
    return f"{base}/#/experiments/{experiment_id}/runs{RUNS_ORDER}"


def next_commands(uri: str, experiment: str, experiment_id: str) -> list[str]:
    """The commands to look further: the MLflow UI on this store and this experiment's
    runs page, the export of its tables."""
    from mlp_sweeps.record.store import resolve_uri

    default = uri == resolve_uri(None)
    lines = []
    if not uri.startswith(("http://", "https://")):
        lines.append(f"  mlflow ui --backend-store-uri {uri}")
    lines.append(f"  open {ui_url(uri, experiment_id)}")
    lines.append(f"  mlp-export -e {experiment}" + ("" if default else f" --uri {uri}"))
    return ["next:", *lines]


def report(ledger: Ledger | None, parent: str | None, wall_s: float,
           est: Estimate | None) -> None:
    """The end of the sweep: its comparison table (best test accuracy first), ``wall: <s>
    s (estimated <s> s)`` and the next commands, logged; on the parent run the wall time
    and the estimate as metrics, the table as its description. Never raises."""
    est_s = est.wall_s if est is not None else None
    lines = ["", f"wall: {wall_s:.0f} s" + (f" (estimated {est_s:.0f} s)" if est_s else "")]
    if ledger is None or parent is None:
        log.info("\n".join(lines))
        return
    try:
        from mlp_sweeps.read import tables
        from mlp_sweeps.read.results import load_runs

        uri, tracker = ledger.tracker.uri, ledger.tracker
        runs = load_runs(uri, ledger.experiment, parent_run_id=parent)
        if not runs.empty:
            table = tables.comparison(runs, rank_by="test_acc")
            lines[1:1] = ["", tables.render(table, "markdown")]
            tracker.set_tags(parent, {NOTE_TAG: _note(ledger.experiment, table, wall_s, est_s)})
        tracker.log_metrics(parent, {"wall_s": wall_s,
                                     **({"estimated_wall_s": est_s} if est_s else {})})
        exp_id = tracker.experiment_id(ledger.experiment)
        lines += next_commands(uri, ledger.experiment, exp_id)
    except Exception as e:  # noqa: BLE001 - the report must not hide the sweep's result
        from mlp_sweeps.record.faults import first_line

        lines.append(f"(no table: {first_line(e)})")
    log.info("\n".join(lines))


def _note(experiment: str, table, wall_s: float, est_s: float | None) -> str:
    from mlp_sweeps.read import tables

    est = f" (estimated {est_s:.0f} s)" if est_s else ""
    return (f"**Sweep of experiment `{experiment}`**: wall {wall_s:.0f} s{est}\n\n"
            f"{tables.render(table, 'markdown')}\n")
