"""Sweep files: which ``params.yaml`` keys a sweep varies, and the points that come out of them.

A sweep file (YAML)::

    name: lr                    # experiments are named lr-00, lr-01, ...
    metric: conv.accuracy       # a key of reports/metrics.json
    goal: max                   # max | min
    set:                        # the same for every point (optional)
      train_conv.epochs: 2
    grid:                       # every combination (optional)
      train_conv.lr: [0.003, 0.01, 0.03]
      train_conv.seed: [0, 1, 2, 3]
    random:                     # seeded samples (optional), each crossed with the grid
      samples: 4
      seed: 0
      params:
        train_conv.weight_decay: {loguniform: [1.0e-5, 1.0e-2]}
        train_conv.dropout: {uniform: [0.0, 0.5]}
        train_conv.batch_size: {choice: [64, 128]}

or, instead of grid and random, a model-based search (Optuna's TPE sampler, asked for the next
point whenever a worker frees up, told each point's metric when it lands)::

    search:
      trials: 24                # the budget: points in all, counting those already on origin
      seed: 0
      parallel: 2               # points in flight at once (default: the cluster's worker slots)
      startup: 8                # random points before the sampler models the results
      params:                   # the same distributions as random
        train_conv.lr: {loguniform: [1.0e-3, 3.0e-2]}
        train_conv.dropout: {uniform: [0.0, 0.5]}

Search points are named ``NAME-000``, ``NAME-001``, ... in the order they are asked for; the
sampler is seeded per point (the file's seed and the point's number), so with one point in flight
the same file gives the same sequence, and a rerun rebuilds the optimizer from the points that
landed on origin and goes on where it stopped (``sweep/search.py``).

Seeds are an axis like any other (``train_conv.seed: [0, 1, 2]`` in ``grid``), so a random search
with three seeds per sample is ``random`` plus a seed axis in ``grid``. Points are numbered in a
fixed order (random samples outer, grid inner, the grid in file order with the last key fastest),
so the same file always gives the same names and values: that is what lets a rerun skip the points
that already landed.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.params import check_keys, parse_section, read_yaml_file, set_args

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DISTRIBUTIONS = ("uniform", "loguniform", "choice", "randint")


class SpecError(ValueError):
    """A sweep file that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class Point:
    """One experiment of a sweep: its name and the ``params.yaml`` values it sets."""

    name: str
    params: dict = field(hash=False)

    def set_args(self) -> list[str]:
        """The ``-S key=value`` arguments of ``dvc exp run`` for this point."""
        return set_args(self.params)


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file. ``swept`` lists the keys that differ between points, in file order."""

    name: str
    metric: str
    goal: str
    fixed: dict
    grid: dict
    samples: int
    seed: int
    distributions: dict
    search: SearchSection | None = None

    @property
    def swept(self) -> list[str]:
        return [*self.distributions, *(k for k in self.grid if k not in self.distributions)]

    def points(self) -> list[Point]:
        """Every point of a grid and/or random sweep, in order (a search's come one by one)."""
        if self.search is not None:
            raise ValueError("a search sweep's points are asked for one at a time")
        grid = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        draws = sample(self.distributions, self.samples, self.seed) if self.distributions else [{}]
        combos = [draw | cell for draw in draws for cell in grid]
        width = max(2, len(str(len(combos) - 1)))
        return [Point(f"{self.name}-{i:0{width}d}", self.fixed | c) for i, c in enumerate(combos)]


def sample(distributions: dict, samples: int, seed: int) -> list[dict]:
    """``samples`` draws of every distribution from one seeded generator, 4 significant digits."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        draw = {}
        for key, (kind, arg) in distributions.items():
            if kind == "choice":
                draw[key] = arg[int(rng.integers(len(arg)))]
            elif kind == "randint":
                draw[key] = int(rng.integers(arg[0], arg[1] + 1))
            elif kind == "uniform":
                draw[key] = round_sig(float(rng.uniform(arg[0], arg[1])))
            else:
                draw[key] = round_sig(math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))))
        draws.append(draw)
    return draws


def round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def check_sampled(section: str, f, counts: tuple[str, ...], verb: str) -> None:
    """The checks ``random:`` and ``search:`` share: each of ``counts`` (samples, trials,
    parallel, startup) at least 1 where given, a non-negative seed, at least one key."""
    for key in counts:
        value = getattr(f, key)
        if value is not None and value < 1:
            raise PipelineError(f"{section}.{key}: {value!r} must be at least 1")
    if f.seed < 0:
        raise PipelineError(f"{section}.seed: {f.seed!r} must be a non-negative integer")
    if not f.params:
        raise PipelineError(f"{section}.params: name at least one key to {verb}")


@dataclass
class RandomSection:
    """``random:`` seeded samples of the named distributions, each crossed with the grid."""

    samples: int
    params: dict
    seed: int = 0

    def validate(self, section):
        check_sampled(section, self, ("samples",), "sample")


@dataclass
class SearchSection:
    """``search:`` a model-based search of the named distributions (``sweep/search.py``)."""

    trials: int
    params: dict
    seed: int = 0
    parallel: int | None = None
    startup: int = 8

    def validate(self, section):
        check_sampled(section, self, ("trials", "parallel", "startup"), "search")


@dataclass
class SweepFile:
    """A sweep file's keys and types, parsed by the same parser as ``params.yaml``."""

    name: str
    metric: str
    goal: str = "max"
    set: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    random: RandomSection | None = None
    search: SearchSection | None = None

    def validate(self, section):
        if not NAME.match(self.name):
            raise PipelineError(
                f"name: {self.name!r} must be letters, digits and _, starting with a letter"
            )
        if not self.metric:
            raise PipelineError("metric: empty (a key of reports/metrics.json, e.g. conv.accuracy)")
        if self.goal not in ("max", "min"):
            raise PipelineError(f"goal: {self.goal!r} must be max or min")


def load(path: str | Path, params: dict) -> Sweep:
    """Parse and check a sweep file against the project's ``params`` (``params.yaml`` as a dict)."""
    path = Path(path)
    try:
        raw = read_yaml_file(path)
    except PipelineError as e:
        raise SpecError(str(e)) from None
    try:
        return _checked(parse_section(SweepFile, raw, ""), params)
    except PipelineError as e:
        raise SpecError(f"{path}: {e}") from None


def _checked(f: SweepFile, params: dict) -> Sweep:
    """The checks that need ``params.yaml`` or span sections, then the :class:`Sweep`."""
    check_keys("set", f.set, params)
    check_keys("grid", f.grid, params)
    for key, values in f.grid.items():
        if not isinstance(values, list) or not values:
            raise PipelineError(f"grid.{key}: expected a non-empty list of values")
    if f.search is not None:
        if f.grid or f.random is not None:
            raise PipelineError("search: cannot be combined with grid or random (one per file)")
        check_keys("search.params", f.search.params, params)
        distributions = {
            key: parse_distribution(f"search.params.{key}", dist)
            for key, dist in f.search.params.items()
        }
        overlap = sorted(set(f.set) & set(distributions))
        if overlap:
            raise PipelineError(f"{overlap[0]}: appears in both set and search")
        return Sweep(f.name, f.metric, f.goal, f.set, {}, 0, 0, distributions, f.search)
    distributions, samples, seed = {}, 0, 0
    if f.random is not None:
        check_keys("random.params", f.random.params, params)
        samples, seed = f.random.samples, f.random.seed
        for key, dist in f.random.params.items():
            distributions[key] = parse_distribution(f"random.params.{key}", dist)
    sampled = set(distributions)
    overlap = sorted((set(f.set) & (set(f.grid) | sampled)) | (set(f.grid) & sampled))
    if overlap:
        raise PipelineError(f"{overlap[0]}: appears in more than one of set, grid and random")
    if not f.grid and not distributions:
        raise PipelineError("nothing to sweep: give grid and/or random, or search")
    return Sweep(f.name, f.metric, f.goal, f.set, f.grid, samples, seed, distributions)


def parse_distribution(where: str, dist) -> tuple[str, list]:
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        forms = ", ".join(f"{{{d}: [...]}}" for d in DISTRIBUTIONS)
        raise PipelineError(f"{where}: expected one of {forms}")
    kind, arg = next(iter(dist.items()))
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise PipelineError(f"{where}.choice: expected a non-empty list")
        return kind, arg
    numbers = isinstance(arg, list) and len(arg) == 2
    numbers = numbers and all(isinstance(a, int | float) and not isinstance(a, bool) for a in arg)
    if not numbers or not arg[0] < arg[1]:
        raise PipelineError(f"{where}.{kind}: expected [low, high] with low < high, got {arg!r}")
    if kind == "loguniform" and arg[0] <= 0:
        raise PipelineError(f"{where}.loguniform: bounds must be positive, got {arg!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in arg):
        raise PipelineError(f"{where}.randint: bounds must be integers, got {arg!r}")
    return kind, arg
