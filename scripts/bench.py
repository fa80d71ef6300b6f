"""Benchmark one training configuration against its matrix-product floor.

    python scripts/bench.py                                   # baseline, 2 epochs, 1 and N threads
    python scripts/bench.py --threads 1,2,4                   # any thread counts
    python scripts/bench.py depth=2 batch_size=10 activation=gelu
    python scripts/bench.py loss=hinge loss.margin=3 --epochs 3 --json
    python scripts/bench.py --cases                           # the standard cases, 1 epoch each
    python scripts/bench.py --peers --epochs 3                # beside PyTorch and scikit-learn

Each configuration runs once per thread count of ``--threads`` (default: 1 and this
machine's cores), all in this process, and a last table gives each count's epoch and floor
with their speed-ups over one thread: the run's threads split its steps (:mod:`mlp.split`),
the floor is NumPy's BLAS threading the same products.

Overrides use the vocabulary of :class:`mlp.config.TrainConfig` (``key=value``; ``data.<key>``
for the data settings and ``loss.<param>`` for the loss's parameters, as in ``conf/``).
Training runs through :func:`mlp.train.train` on the real MNIST (memory-mapped cache).

What is measured, per epoch:

- ``wall``: the training epoch's wall time (``epoch_time_s``; evaluation excluded);
- ``floor``: the epoch's matrix products alone, NumPy's BLAS on the run's thread count
  (its own threading): the same ``np.matmul`` calls, in the same
  order, with the same shapes, dtypes, transposes and preallocated outputs as one epoch of
  training (per batch: ``u = x W`` for every layer, then from the last layer down
  ``dW = x^T gu`` and, except for the first layer, ``gx = gu W^T``), run right after the
  epoch in the same process. The bias gradient's small ``1^T gu`` product is left out: it
  counts as overhead, like the bias add;
- ``ratio = wall / floor``: 1.0 would mean everything except BLAS is free; ``CPU ratio``: the
  same in the run's CPU time (:func:`mlp.team.cpu_s`: its threads and helper processes), robust to time-slicing on a loaded
  machine (with one BLAS thread; equal to ``ratio`` on an idle machine), for the epochs
  without evaluation (only the last epoch is evaluated);
- ``samples/s`` = training examples / wall, and ``eval``: the epoch's test-set evaluation.

Per run: the mean split of an epoch into ``data`` (batch gathering), ``forward`` (network,
loss and train metrics), ``backward`` (loss gradient and network), ``update`` (SGD) and
``other`` (the rest of the loop), from :attr:`mlp.train.Result.timing`; and the peak resident
memory (``ru_maxrss``; the memory-mapped data set counts once touched). ``--json`` prints all
of it, per epoch and as medians over the epochs.

``--peers`` also trains the same network on the same data with the same optimizer and BLAS
thread count in PyTorch (CPU) and scikit-learn's ``MLPClassifier``, whichever are installed
(``pip install -e ".[bench]"``): one epoch of each right after each of this project's epochs,
in this process, and prints the per-epoch ratios (medians over the epochs), in wall time and
in the run's CPU time (:func:`mlp.team.cpu_s`: robust to time-slicing on a loaded
machine; equal to wall time on an idle one with one thread). With ``--peers`` only the last
epoch is evaluated, so the other epochs' CPU time is training alone. Supported for
``loss=cross_entropy``, ``activation`` relu or sigmoid, no dropout, ``optimizer=sgd``.

``--cases`` runs each standard case in its own process (so peak memory is per case) and prints
one row per case. Times are noisy on a shared machine: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
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
from mlp.perf import MatmulFloor, blas_info, forced_kernel_warning  # noqa: E402
from mlp.team import cpu_s  # noqa: E402
from mlp.train import cores, load_data, train  # noqa: E402

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


def bench(cfg: TrainConfig, epochs: int = 2, threads: int = 1,
          peers: bool = False) -> dict[str, Any]:
    """Train ``cfg`` on ``threads`` threads for ``epochs`` (evaluating every epoch),
    measuring each epoch's floor on as many BLAS threads (and, with ``peers``, an epoch of
    each installed peer on as many threads) right after it. Returns a JSON-serialisable
    dict (see the module docstring)."""
    cfg = replace(cfg, epochs=epochs, test_every=epochs).validate()
    with threadpool_limits(limits=threads, user_api="blas"):
        ds = load_data(cfg)
        n = ds.x_train.shape[0]
        sizes = [ds.n_features] + [cfg.hidden_size] * cfg.depth + [ds.n_classes]
        floor = MatmulFloor(sizes, n, cfg.batch_size, cfg.dtype, seed=cfg.seed)
        others = make_peers(cfg, ds, threads) if peers else []
        blas = blas_info()  # the libraries, their kernels
    rows: list[dict[str, Any]] = []

    cpu_mark = [cpu_s()]

    def on_epoch(rec: dict[str, Any]) -> None:
        cpu = cpu_s() - cpu_mark[0]  # the epoch (and its evaluation, if any)
        # (training holds BLAS at one thread: the floor and the peers get the run's count)
        with threadpool_limits(limits=threads, user_api="blas"):
            c0 = cpu_s()
            f = floor.run()  # right after the epoch (and its evaluation)
            f_cpu = cpu_s() - c0
            wall = rec["epoch_time_s"]
            rows.append({"epoch": rec["epoch"], "wall_s": wall, "floor_s": f,
                         "ratio": wall / f, "floor_cpu_s": f_cpu,
                         "cpu_ratio": None if "eval_time_s" in rec else cpu / f_cpu,
                         "eval_s": rec.get("eval_time_s", 0.0), "samples_per_s": n / wall,
                         "train_loss": rec["train_loss"], "test_acc": rec.get("test_acc")})
            rows[-1]["cpu_s"] = None if "eval_time_s" in rec else cpu
            for peer in others:  # interleaved: a drift of the machine hits every one
                c0 = cpu_s()
                t, loss = peer.epoch()
                rows[-1][f"{peer.name}_s"] = t
                rows[-1][f"{peer.name}_cpu_s"] = cpu_s() - c0
                rows[-1][f"{peer.name}_train_loss"] = loss
        cpu_mark[0] = cpu_s()

    result = train(cfg, callback=on_epoch, data=ds, threads=threads)
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
            "cpu_ratio": _median([r["cpu_ratio"] for r in rows if r["cpu_ratio"] is not None]),
            "samples_per_s": n / wall,
        },
        "peers": {p.name: _peer_summary(p, rows) for p in others} if rows else {},
        "cpu_s": _median([r["cpu_s"] for r in rows if r.get("cpu_s") is not None]),
        "peers_missing": [m for m in PEERS if m not in {p.name for p in others}] if peers else [],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "numpy": np.__version__,
        "blas": blas,
        "blas_warning": forced_kernel_warning(),
    }


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _peer_summary(peer, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the epochs: the peer's wall and CPU seconds, and ours / theirs."""
    n = peer.name
    cpu_rows = [r for r in rows if r.get("cpu_s") is not None]
    return {"version": peer.version, "threads": peer.threads,
            "wall_s": statistics.median(r[f"{n}_s"] for r in rows),
            "ratio": statistics.median(r["wall_s"] / r[f"{n}_s"] for r in rows),
            "cpu_s": _median([r[f"{n}_cpu_s"] for r in cpu_rows]),
            "cpu_ratio": _median([r["cpu_s"] / r[f"{n}_cpu_s"] for r in cpu_rows])}


# --- peers: the same training elsewhere ---------------------------------------------------


class TorchPeer:
    """The same MLP, loss, SGD (PyTorch's rule is this project's: v <- m v + g + wd p;
    p <- p - lr v) and batches in PyTorch on the CPU, ``torch.set_num_threads(threads)``.
    Train loss and accuracy are accumulated per batch, as here."""

    name = "pytorch"

    def __init__(self, cfg: TrainConfig, ds, threads: int | None):
        import torch

        self.torch, self.version = torch, torch.__version__
        self.threads = threads or os.cpu_count()
        torch.set_num_threads(self.threads)
        torch.manual_seed(cfg.seed)
        tdt = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
        self.x = torch.from_numpy(np.asarray(ds.x_train, dtype=cfg.dtype).copy())
        self.y = torch.from_numpy(np.array(ds.y_train, dtype=np.int64))  # a writable copy
        sizes = [ds.n_features] + [cfg.hidden_size] * cfg.depth + [ds.n_classes]
        act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}[cfg.activation]
        layers: list = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = torch.nn.Linear(a, b, dtype=tdt)
            torch.nn.init.normal_(lin.weight, 0.0, 0.01)  # the study's init
            torch.nn.init.zeros_(lin.bias)
            layers += [lin] + ([act()] if i < len(sizes) - 2 else [])
        self.model = torch.nn.Sequential(*layers)
        self.loss = torch.nn.CrossEntropyLoss(reduction=cfg.reduction)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.bs = cfg.batch_size
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def epoch(self) -> tuple[float, float]:
        """(seconds, mean train loss) of one epoch."""
        torch, n = self.torch, self.x.shape[0]
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=self.gen)
        total, correct = 0.0, 0
        for start in range(0, n, self.bs):
            idx = perm[start:start + self.bs]
            xb, yb = self.x[idx], self.y[idx]
            self.opt.zero_grad()
            out = self.model(xb)
            loss = self.loss(out, yb)
            loss.backward()
            self.opt.step()
            total += loss.item() * (1 if self.loss.reduction == "sum" else len(idx))
            correct += int((out.argmax(1) == yb).sum())
        return time.perf_counter() - t0, total / n


class SklearnPeer:
    """scikit-learn's ``MLPClassifier`` (solver ``sgd``, heavy-ball momentum) on the same data,
    one ``partial_fit`` pass per epoch, the dtype kept (float32 stays float32). Its gradient
    is of the batch mean plus ``alpha W / batch``: ``learning_rate_init = lr * batch`` and
    ``alpha = weight_decay`` take the same steps for the sum-reduced loss (its biases are not
    decayed; its init is Glorot's: the same work per step)."""

    name = "sklearn"

    def __init__(self, cfg: TrainConfig, ds, threads: int | None):
        import sklearn
        from sklearn.neural_network import MLPClassifier

        self.version, self.threads = sklearn.__version__, threads
        scale = cfg.batch_size if cfg.reduction == "sum" else 1
        self.clf = MLPClassifier(
            hidden_layer_sizes=(cfg.hidden_size,) * cfg.depth,
            activation={"relu": "relu", "sigmoid": "logistic"}[cfg.activation], solver="sgd",
            alpha=cfg.weight_decay, batch_size=cfg.batch_size, learning_rate_init=cfg.lr * scale,
            momentum=cfg.momentum, nesterovs_momentum=False, shuffle=True,
            random_state=cfg.seed)
        self.x = np.asarray(ds.x_train, dtype=cfg.dtype)
        self.y = np.asarray(ds.y_train)
        self.classes = np.arange(ds.n_classes)

    def epoch(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.clf.partial_fit(self.x, self.y, classes=self.classes)
        return time.perf_counter() - t0, float(self.clf.loss_)


PEERS = {"pytorch": ("torch", TorchPeer), "sklearn": ("sklearn", SklearnPeer)}


def make_peers(cfg: TrainConfig, ds, threads: int | None) -> list:
    """The installed peers for ``cfg``; a configuration they cannot train is an error."""
    bad = {k: v for k, v in (("loss", cfg.loss), ("activation", cfg.activation),
                             ("dropout", cfg.dropout), ("optimizer", cfg.optimizer))
           if v not in {"loss": ("cross_entropy",), "activation": ("relu", "sigmoid"),
                        "dropout": (0, 0.0), "optimizer": ("sgd",)}[k]}
    if bad:
        raise SystemExit(f"--peers: {', '.join(f'{k}={v!r}' for k, v in bad.items())} not "
                         f"supported (cross_entropy, relu or sigmoid, no dropout, sgd)")
    out = []
    for name, (module, cls) in PEERS.items():
        if importlib.util.find_spec(module) is None:
            print(f"--peers: {module} is not installed (pip install -e \".[bench]\"); "
                  f"{name} skipped", file=sys.stderr)
            continue
        out.append(cls(cfg, ds, threads))
    return out


# --- output --------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _blas_lines(res: dict[str, Any]) -> str:
    lines = [f"BLAS: {b['library']} {b['version']}, kernel {b['kernel']}, {b['threads']} "
             f"thread(s)" for b in res["blas"]]
    if res.get("blas_warning"):
        lines.append(f"WARNING: {res['blas_warning']}")
    return "\n".join(lines)


def describe(res: dict[str, Any]) -> str:
    c = res["config"]
    head = (f"{'-'.join(map(str, res['sizes']))} {c['activation']} {c['loss']} batch "
            f"{c['batch_size']} {c['dtype']} dropout {c['dropout']}, n_train {res['n_train']}, "
            f"{res['threads']} thread(s), numpy {res['numpy']}\n" + _blas_lines(res))
    ep = _table(["epoch", "wall s", "floor s", "ratio", "samples/s", "eval s", "train loss",
                 "test acc"],
                [[str(r["epoch"]), f"{r['wall_s']:.3f}", f"{r['floor_s']:.3f}",
                  f"{r['ratio']:.2f}", f"{r['samples_per_s']:,.0f}", f"{r['eval_s']:.3f}",
                  f"{r['train_loss']:.4f}",
                  "-" if r["test_acc"] is None else f"{r['test_acc']:.4f}"] for r in res["epochs"]])
    s = res["split_per_epoch_s"]
    wall = sum(s[k] for k in (*PARTS, "other"))
    split = _table(["per epoch", *PARTS, "other", "eval"],
                   [["seconds", *(f"{s[k]:.3f}" for k in (*PARTS, "other", "eval"))],
                    ["% of wall", *(f"{100 * s[k] / wall:.1f}" for k in (*PARTS, "other")), ""]])
    m = res["median"]
    cpu = "-" if m.get("cpu_ratio") is None else f"{m['cpu_ratio']:.2f}"
    tail = (f"median: wall {m['wall_s']:.3f} s, floor {m['floor_s']:.3f} s, ratio "
            f"{m['ratio']:.2f} (CPU time: {cpu}), {m['samples_per_s']:,.0f} samples/s; peak RSS "
            f"{res['peak_rss_mib']:.0f} MiB; status {res['status']}")
    parts = [head, ep, split, tail]
    if res.get("peers"):
        fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
        rows = [["this project", f"{m['wall_s']:.3f}", "1.00", fmt(res["cpu_s"], ".3f"), "1.00",
                 str(res["threads"])]]
        rows += [[f"{k} {p['version']}", f"{p['wall_s']:.3f}", f"{p['ratio']:.2f}",
                  fmt(p["cpu_s"], ".3f"), fmt(p["cpu_ratio"], ".2f"), str(p["threads"])]
                 for k, p in res["peers"].items()]
        parts.append("peers, one epoch each after each of ours (medians over the epochs; CPU: "
                     "epochs without evaluation):\n"
                     + _table(["", "epoch s", "ours / theirs", "CPU s", "ours / theirs",
                               "threads"], rows))
    if res.get("peers_missing"):
        parts.append(f"peers not installed: {', '.join(res['peers_missing'])}")
    return "\n\n".join(parts)


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
                     "-" if m.get("cpu_ratio") is None else f"{m['cpu_ratio']:.2f}",
                     *(f"{s[k]:.3f}" for k in (*PARTS, "other", "eval")),
                     f"{m['samples_per_s']:,.0f}", f"{r['peak_rss_mib']:.0f}"])
    kernels = sorted({f"{b['kernel']}" for r in results for b in r["blas"]})
    warn = next((r["blas_warning"] for r in results if r.get("blas_warning")), None)
    return "\n".join([f"BLAS kernel(s): {', '.join(kernels)}"]
                     + ([f"WARNING: {warn}"] if warn else []) + [""]) + _table(
        ["case", "wall s", "floor s", "ratio", "CPU ratio", *PARTS, "other", "eval",
         "samples/s", "RSS MiB"], rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="TrainConfig settings, e.g. depth=2 batch_size=10 activation=gelu")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default 2; 1 per case with --cases)")
    p.add_argument("--threads", type=_counts, default=None,
                   help="thread counts, comma-separated (default: 1 and this machine's "
                        "cores); 0: the cores")
    p.add_argument("--train-limit", type=int, default=None,
                   help="use only the first N training examples")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--peers", action="store_true",
                   help="also train the same net in PyTorch and scikit-learn (if installed)")
    p.add_argument("--cases", "--suite", action="store_true",
                   help="run the standard cases (overrides apply to all), one row each")
    a = p.parse_args(argv)
    counts = a.threads or sorted({1, cores()})
    if a.cases and a.peers:
        raise SystemExit("--peers runs one configuration: not with --cases")
    if a.cases:
        for t in counts:
            results = run_cases(a.epochs or 1, t, a.train_limit, a.overrides)
            print(json.dumps(results, indent=1) if a.json else
                  f"{t} thread(s):\n" + describe_cases(results) + "\n")
        return
    limit = [] if a.train_limit is None else [f"data.train_limit={a.train_limit}"]
    cfg = make_config(a.overrides + limit)
    results = [bench(cfg, epochs=a.epochs or 2, threads=t, peers=a.peers) for t in counts]
    if a.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=1))
        return
    print("\n\n".join(describe(r) for r in results))
    if len(results) > 1:
        print("\n" + describe_threads(results))


def _counts(text: str) -> list[int]:
    try:
        counts = [int(t) or cores() for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads {text!r}: comma-separated integers, "
                                         f"e.g. 1,2") from None
    if any(t < 1 for t in counts):
        raise argparse.ArgumentTypeError(f"--threads {text!r}: counts must be >= 0")
    return counts


def describe_threads(results: list[dict[str, Any]]) -> str:
    """One row per thread count: epoch, floor, their speed-ups over the first count (one
    thread), the epoch over the floor, and each peer's epoch over ours."""
    base = results[0]["median"]
    peers = sorted({k for r in results for k in r.get("peers", {})})
    rows = []
    for r in results:
        m = r["median"]
        rows.append([str(r["threads"]), f"{m['wall_s']:.3f}", f"{base['wall_s'] / m['wall_s']:.2f}",
                     f"{m['wall_s'] / base['wall_s']:.2f}", f"{m['floor_s']:.3f}",
                     f"{base['floor_s'] / m['floor_s']:.2f}", f"{m['ratio']:.2f}",
                     *(f"{r['peers'][k]['wall_s']:.3f}" if k in r.get("peers", {}) else "-"
                       for k in peers)])
    return ("threads (one process; speed-up = one thread's time / this count's):\n"
            + _table(["threads", "epoch s", "speed-up", "epoch / 1-thread epoch", "floor s",
                      "floor speed-up", "epoch / floor", *(f"{k} epoch s" for k in peers)],
                     rows))


if __name__ == "__main__":
    main()
