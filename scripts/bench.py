"""Benchmark one training configuration against its matrix-product floor.

    python scripts/bench.py                                   # baseline, 2 epochs, 1 thread
    python scripts/bench.py depth=2 batch_size=10 activation=gelu
    python scripts/bench.py loss=hinge loss.margin=3 --epochs 3 --json
    python scripts/bench.py --cases                           # the standard cases, 1 epoch each

Overrides use the vocabulary of :class:`mlp.config.TrainConfig` (``key=value``; ``data.<key>``
for the data settings and ``loss.<param>`` for the loss's parameters, as in ``conf/``).
Training runs through :func:`mlp.train.train` on the real MNIST (memory-mapped cache).

What is measured, per epoch:

- ``wall``: the training epoch's wall time (``epoch_time_s``; evaluation excluded);
- ``floor``: the epoch's matrix products alone: the same ``np.matmul`` calls, in the same
  order, with the same shapes, dtypes, transposes and preallocated outputs as one epoch of
  training (per batch: ``u = x W`` for every layer, then from the last layer down
  ``dW = x^T gu`` and, except for the first layer, ``gx = gu W^T``), run right after the
  epoch in the same process. The bias gradient's small ``1^T gu`` product is left out: it
  counts as overhead, like the bias add;
- ``ratio = wall / floor``: 1.0 would mean everything except BLAS is free;
- ``samples/s`` = training examples / wall, and ``eval``: the epoch's test-set evaluation.

Per run: the mean split of an epoch into ``data`` (batch gathering), ``forward`` (network,
loss and train metrics), ``backward`` (loss gradient and network), ``update`` (SGD) and
``other`` (the rest of the loop), from :attr:`mlp.train.Result.timing`; and the peak resident
memory (``ru_maxrss``; the memory-mapped data set counts once touched). ``--json`` prints all
of it, per epoch and as medians over the epochs.

``--cases`` runs each standard case in its own process (so peak memory is per case) and prints
one row per case. Times are noisy on a shared machine: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import ast
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlp import activations, losses  # noqa: E402
from mlp.config import ConfigError, DataConfig, TrainConfig  # noqa: E402
from mlp.perf import MatmulFloor  # noqa: E402
from mlp.train import load_data, train  # noqa: E402

PARTS = ("data", "forward", "backward", "update")

_BASE = TrainConfig()
# name -> overrides of the baseline (784-784-10, batch 100, relu, cross_entropy); every other
# registered activation and loss is a case of its own
CASES: dict[str, list[str]] = {
    "baseline": [],
    **{k: [k] for k in ("depth=2", "batch_size=10", "batch_size=1000", "hidden_size=16",
                        "hidden_size=2048")},
    **{f"activation={a}": [f"activation={a}"] for a in activations.names()
       if a != _BASE.activation},
    **{f"loss={name}": [f"loss={name}"] for name in losses.names() if name != _BASE.loss},
}


# --- configuration -------------------------------------------------------------------------


def _value(text: str) -> Any:
    """A Python literal if it parses as one (``3``, ``1e-4``, ``[0.1, 0.2]``), else the text;
    ``null``/``none`` are None."""
    if text.lower() in ("null", "none"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def make_config(overrides: list[str]) -> TrainConfig:
    """A validated :class:`TrainConfig` from ``key=value`` overrides of the defaults."""
    top = {f.name for f in fields(TrainConfig)} - {"data", "loss_params"}
    data_keys = {f.name for f in fields(DataConfig)}
    kw: dict[str, Any] = {}
    data: dict[str, Any] = {}
    loss_params: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"override {item!r} is not key=value")
        value = _value(text)
        if key.startswith("data.") and key[5:] in data_keys:
            data[key[5:]] = value
        elif key.startswith("loss."):
            loss_params[key[5:]] = value
        elif key in top:
            kw[key] = value
        else:
            valid = sorted(top) + [f"data.{k}" for k in sorted(data_keys)] + ["loss.<param>"]
            raise SystemExit(f"unknown setting {key!r}; valid: {', '.join(valid)}")
    try:
        return TrainConfig(**kw, loss_params=loss_params, data=DataConfig(**data)).validate()
    except ConfigError as e:
        raise SystemExit(str(e)) from None


# --- the benchmark -------------------------------------------------------------------------


def bench(cfg: TrainConfig, epochs: int = 2, threads: int | None = 1) -> dict[str, Any]:
    """Train ``cfg`` for ``epochs`` (evaluating every epoch), measuring each epoch's floor
    right after it. Returns a JSON-serialisable dict (see the module docstring)."""
    cfg = replace(cfg, epochs=epochs, test_every=1).validate()
    with threadpool_limits(limits=threads, user_api="blas"):
        ds = load_data(cfg)
        n = ds.x_train.shape[0]
        sizes = [ds.n_features] + [cfg.hidden_size] * cfg.depth + [ds.n_classes]
        floor = MatmulFloor(sizes, n, cfg.batch_size, cfg.dtype, seed=cfg.seed)
        rows: list[dict[str, Any]] = []

        def on_epoch(rec: dict[str, Any]) -> None:
            f = floor.run()  # right after the epoch (and its evaluation)
            wall = rec["epoch_time_s"]
            rows.append({"epoch": rec["epoch"], "wall_s": wall, "floor_s": f, "ratio": wall / f,
                         "eval_s": rec.get("eval_time_s", 0.0), "samples_per_s": n / wall,
                         "train_loss": rec["train_loss"], "test_acc": rec.get("test_acc")})

        result = train(cfg, callback=on_epoch, data=ds)
    done = max(len(rows), 1)
    split = {k: result.timing[k] / done for k in PARTS}
    wall = statistics.median(r["wall_s"] for r in rows) if rows else float("nan")
    split["other"] = sum(r["wall_s"] for r in rows) / done - sum(split.values())
    split["eval"] = result.timing["eval"] / done
    return {
        "config": cfg.to_dict(),
        "sizes": sizes,
        "threads": threads,
        "n_train": n,
        "status": result.status,
        "epochs": rows,
        "split_per_epoch_s": split,  # means over the epochs
        "median": {
            "wall_s": wall,
            "floor_s": statistics.median(r["floor_s"] for r in rows) if rows else float("nan"),
            "ratio": statistics.median(r["ratio"] for r in rows) if rows else float("nan"),
            "samples_per_s": n / wall,
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "numpy": np.__version__,
    }


# --- output --------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def describe(res: dict[str, Any]) -> str:
    c = res["config"]
    head = (f"{'-'.join(map(str, res['sizes']))} {c['activation']} {c['loss']} batch "
            f"{c['batch_size']} {c['dtype']} dropout {c['dropout']}, n_train {res['n_train']}, "
            f"{res['threads']} BLAS thread(s), numpy {res['numpy']}")
    ep = _table(["epoch", "wall s", "floor s", "ratio", "samples/s", "eval s", "train loss",
                 "test acc"],
                [[str(r["epoch"]), f"{r['wall_s']:.3f}", f"{r['floor_s']:.3f}",
                  f"{r['ratio']:.2f}", f"{r['samples_per_s']:,.0f}", f"{r['eval_s']:.3f}",
                  f"{r['train_loss']:.4f}", f"{r['test_acc']:.4f}"] for r in res["epochs"]])
    s = res["split_per_epoch_s"]
    wall = sum(s[k] for k in (*PARTS, "other"))
    split = _table(["per epoch", *PARTS, "other", "eval"],
                   [["seconds", *(f"{s[k]:.3f}" for k in (*PARTS, "other", "eval"))],
                    ["% of wall", *(f"{100 * s[k] / wall:.1f}" for k in (*PARTS, "other")), ""]])
    m = res["median"]
    tail = (f"median: wall {m['wall_s']:.3f} s, floor {m['floor_s']:.3f} s, ratio "
            f"{m['ratio']:.2f}, {m['samples_per_s']:,.0f} samples/s; peak RSS "
            f"{res['peak_rss_mib']:.0f} MiB; status {res['status']}")
    return "\n\n".join([head, ep, split, tail])


def run_cases(epochs: int, threads: int | None, train_limit: int | None,
              extra: list[str]) -> list[dict[str, Any]]:
    """Each standard case in a fresh process of this script; returns their results."""
    out = []
    for name, overrides in CASES.items():
        cmd = [sys.executable, __file__, *overrides, *extra, "--json", "--epochs", str(epochs),
               "--threads", str(threads or 0)]
        if train_limit is not None:
            cmd += ["--train-limit", str(train_limit)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"case {name} failed:\n{proc.stderr}")
        res = json.loads(proc.stdout)
        res["case"] = name
        out.append(res)
        print(f"  {name}: ratio {res['median']['ratio']:.2f}", file=sys.stderr, flush=True)
    return out


def describe_cases(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        m, s = r["median"], r["split_per_epoch_s"]
        rows.append([r["case"], f"{m['wall_s']:.3f}", f"{m['floor_s']:.3f}", f"{m['ratio']:.2f}",
                     *(f"{s[k]:.3f}" for k in (*PARTS, "other", "eval")),
                     f"{m['samples_per_s']:,.0f}", f"{r['peak_rss_mib']:.0f}"])
    return _table(["case", "wall s", "floor s", "ratio", *PARTS, "other", "eval", "samples/s",
                   "RSS MiB"], rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="TrainConfig settings, e.g. depth=2 batch_size=10 activation=gelu")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default 2; 1 per case with --cases)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (threadpoolctl); 0: leave the library's default")
    p.add_argument("--train-limit", type=int, default=None,
                   help="use only the first N training examples")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--cases", "--suite", action="store_true",
                   help="run the standard cases (overrides apply to all), one row each")
    a = p.parse_args(argv)
    threads = a.threads or None
    if a.cases:
        results = run_cases(a.epochs or 1, threads, a.train_limit, a.overrides)
        print(json.dumps(results, indent=1) if a.json else describe_cases(results))
        return
    limit = [] if a.train_limit is None else [f"data.train_limit={a.train_limit}"]
    cfg = make_config(a.overrides + limit)
    res = bench(cfg, epochs=a.epochs or 2, threads=threads)
    print(json.dumps(res, indent=1) if a.json else describe(res))


if __name__ == "__main__":
    main()
