"""A sweep file's ``search:``: Optuna's TPE sampler through its ask-and-tell interface.

The runner asks for a point whenever a worker slot is free and tells the sampler the point's
metric when it lands (or that it failed). Two rules make the sequence reproducible and resumable:

- The sampler is seeded per point, from the file's seed and the point's number, so what it
  suggests depends only on that and on the points told before it. With one point in flight the
  same file gives the same sequence on every run.
- Origin is the record: a rerun rebuilds the study from the points that landed there (their
  params read from each experiment's ``params.yaml``, their metric from its ``metrics.json``), then
  asks for the next number. A search interrupted after k points and rerun suggests what the
  uninterrupted one would have, and never repeats a landed point.

Floats are rounded to 4 significant digits (as ``random:`` does) before a point runs, and the
study records the rounded values, so the table and ``dvc exp show`` show what ran.
"""

from __future__ import annotations

import math
import re
import warnings

from sweep.spec import Point, Sweep, round_sig

SEED_STRIDE = 1_000_003  # seed of point i: seed * stride + i (distinct for every seed and point)


def _plain(value) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def distributions(sweep: Sweep) -> dict:
    """The Optuna distribution of each searched key. A ``choice`` among lists (``channels:
    {choice: [[16, 32], [24, 48]]}``) is searched by its position: Optuna's choices are scalars."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out = {}
    for key, (kind, arg) in sweep.distributions.items():
        if kind == "choice":
            out[key] = CategoricalDistribution(
                arg if all(_plain(v) for v in arg) else list(range(len(arg)))
            )
        elif kind == "randint":
            out[key] = IntDistribution(arg[0], arg[1])
        else:
            out[key] = FloatDistribution(arg[0], arg[1], log=kind == "loguniform")
    return out


def index_of(sweep: Sweep, name: str) -> int | None:
    """The number of search point ``name`` (``NAME-012`` -> 12), or None if not one of ours."""
    m = re.fullmatch(re.escape(sweep.name) + r"-(\d+)", name)
    return int(m.group(1)) if m else None


class Search:
    """The study of one search sweep: ``resume`` from what landed, then ``ask`` and ``tell``."""

    def __init__(self, sweep: Sweep):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sweep, self.section = sweep, sweep.search
        self.dists = distributions(sweep)
        # choice keys searched by position: key -> the values, in file order
        self.by_position = {
            k: arg
            for k, (kind, arg) in sweep.distributions.items()
            if kind == "choice" and not all(_plain(v) for v in arg)
        }
        direction = "maximize" if sweep.goal == "max" else "minimize"
        self.study = optuna.create_study(direction=direction)
        self.next = 0  # the number of the next point to ask for
        self.pending: dict[str, object] = {}  # point name -> its asked trial

    def width(self) -> int:
        return max(3, len(str(self.section.trials - 1)))

    def resume(self, landed: list[tuple[int, dict, float | None]]) -> None:
        """Add the points on origin, ``(number, params, metric)``, in order of number; the next
        point asked for is numbered after the last of them."""
        import optuna

        for _, params, value in sorted(landed, key=lambda t: t[0]):
            if value is None or not math.isfinite(value):
                continue  # landed without the metric: nothing to learn from it
            internal = self._internal({k: params[k] for k in self.dists})
            if internal is None:
                continue  # a value outside this file's choices: not a point of this search
            trial = optuna.trial.create_trial(
                params=internal, distributions=self.dists, value=value
            )
            self.study.add_trial(trial)
        self.next = max((t[0] + 1 for t in landed), default=0)

    def ask(self) -> Point:
        """The next point: the sampler's suggestion (seeded for this number), rounded."""
        import optuna

        number = self.next
        self.next += 1
        with warnings.catch_warnings():  # constant_liar is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.sampler = optuna.samplers.TPESampler(
                seed=self.section.seed * SEED_STRIDE + number,
                n_startup_trials=self.section.startup,
                constant_liar=True,  # points in flight count as pending, not re-suggested
            )
        trial = self.study.ask(self.dists)
        internal = {k: round_sig(v) if isinstance(v, float) else v for k, v in trial.params.items()}
        values = {
            k: self.by_position[k][v] if k in self.by_position else v for k, v in internal.items()
        }
        name = f"{self.sweep.name}-{number:0{self.width()}d}"
        self.pending[name] = (trial, internal)
        return Point(name, self.sweep.fixed | values)

    def _internal(self, values: dict) -> dict | None:
        """Values as the study holds them (a position for a choice among lists)."""
        out = dict(values)
        for k, choices in self.by_position.items():
            if out[k] not in choices:
                return None
            out[k] = choices.index(out[k])
        return out

    def tell(self, name: str, value: float | None) -> None:
        """Point ``name`` finished: with its metric, or None if it failed."""
        import optuna
        from optuna.trial import TrialState

        trial, internal = self.pending.pop(name)
        # The asked trial held the unrounded suggestion: close it, record what actually ran.
        self.study.tell(trial, state=TrialState.FAIL)
        if value is not None and math.isfinite(value):
            done = optuna.trial.create_trial(params=internal, distributions=self.dists, value=value)
            self.study.add_trial(done)
