"""The sweep runner's pure parts: sweep files, points, the result table, progress lines."""

import math

import pandas as pd
import pytest
import yaml

from pipeline.params import format_value, load_yaml
from sweep import metrics, report, spec
from sweep.point import error_line
from sweep.runner import Progress, absolute_url

PARAMS = {
    "train_conv": {"lr": 0.01, "seed": 0, "epochs": 6, "hidden": [128], "schedule": "onecycle"},
    "train_dense": {"lr": 0.003, "seed": 0, "dropout": 0.2},
}


def load(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return spec.load(path, PARAMS)


def test_grid_points_in_file_order_last_key_fastest(tmp_path):
    s = load(
        tmp_path,
        """
name: lr
metric: conv.accuracy
set: {train_conv.epochs: 2}
grid:
  train_conv.lr: [0.003, 0.01, 0.03]
  train_conv.seed: [0, 1]
""",
    )
    points = s.points()
    assert [p.name for p in points] == [f"lr-{i:02d}" for i in range(6)]
    assert points[1].params == {
        "train_conv.epochs": 2,
        "train_conv.lr": 0.003,
        "train_conv.seed": 1,
    }
    assert points[5].set_args() == [
        "-S",
        "train_conv.epochs=2",
        "-S",
        "train_conv.lr=0.03",
        "-S",
        "train_conv.seed=1",
    ]
    assert s.swept == ["train_conv.lr", "train_conv.seed"] and s.goal == "max"


def test_random_samples_are_seeded_and_crossed_with_the_grid(tmp_path):
    text = """
name: rnd
metric: conv.loss
goal: min
grid: {train_conv.seed: [0, 1]}
random:
  samples: 3
  seed: 7
  params:
    train_conv.lr: {loguniform: [1.0e-4, 1.0e-1]}
    train_dense.dropout: {uniform: [0.0, 0.5]}
    train_conv.hidden: {choice: [[64], [128, 64]]}
    train_conv.epochs: {randint: [1, 3]}
"""
    a, b = load(tmp_path, text).points(), load(tmp_path, text).points()
    assert [p.params for p in a] == [p.params for p in b]  # same file, same points
    assert len(a) == 6 and [p.params["train_conv.seed"] for p in a] == [0, 1] * 3
    for p in a:
        assert 1e-4 <= p.params["train_conv.lr"] <= 1e-1
        assert p.params["train_conv.lr"] == float(f"{p.params['train_conv.lr']:.4g}")
        assert p.params["train_conv.epochs"] in (1, 2, 3)
        assert p.params["train_conv.hidden"] in ([64], [128, 64])
    assert a[0].params["train_conv.lr"] == a[1].params["train_conv.lr"]  # one sample, two seeds
    hidden = {arg for p in a for arg in p.set_args() if arg.startswith("train_conv.hidden=")}
    assert hidden <= {"train_conv.hidden=[64]", "train_conv.hidden=[128, 64]"} and hidden
    other = load(tmp_path, text.replace("seed: 7", "seed: 8")).points()
    assert [p.params for p in other] != [p.params for p in a]


def test_point_names_widen_past_100_points(tmp_path):
    s = load(
        tmp_path, "name: big\nmetric: m\ngrid: {train_conv.seed: " + str(list(range(120))) + "}"
    )
    assert s.points()[0].name == "big-000" and s.points()[-1].name == "big-119"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: lr\ngrid: {train_conv.lr: [1]}", "metric: missing"),
        ("name: l-r\nmetric: m\ngrid: {train_conv.lr: [1]}", "name: 'l-r' must be"),
        ("name: lr\nmetric: m\ngrid: {train_conv.lrr: [1]}", "grid.train_conv.lrr: not a key"),
        ("name: lr\nmetric: m\ngrid: {train_conv: [1]}", "grid.train_conv: a section"),
        ("name: lr\nmetric: m\ngrid: {train_conv.lr: 0.1}", "grid.train_conv.lr: expected a non"),
        ("name: lr\nmetric: m\n", "nothing to sweep"),
        ("name: lr\nmetric: m\ngoal: up\ngrid: {train_conv.lr: [1]}", "goal: 'up' must be"),
        ("name: lr\nmetric: m\ngrids: {}", "grids: unknown key"),
        (
            "name: lr\nmetric: m\nset: {train_conv.lr: 1}\ngrid: {train_conv.lr: [1]}",
            "train_conv.lr: appears in more than one",
        ),
        (
            "name: lr\nmetric: m\nrandom: {samples: 0, params: {train_conv.lr: {uniform: [0, 1]}}}",
            "random.samples: 0 must be",
        ),
        (
            "name: lr\nmetric: m\nrandom: {samples: 2, params: {train_conv.lr: {normal: [0, 1]}}}",
            "random.params.train_conv.lr: expected one of",
        ),
        (
            "name: lr\nmetric: m\nrandom: {samples: 2, params: {train_conv.lr: {uniform: [1, 0]}}}",
            "uniform: expected [low, high] with low < high",
        ),
        (
            "name: lr\nmetric: m\nrandom: {samples: 2, params: {train_conv.lr: {loguniform: [0, 1]}"
            "}}",
            "loguniform: bounds must be positive",
        ),
        ("name: lr\nmetric: m\ngrid: [", "not valid YAML"),
        (
            "name: s\nmetric: m\nsearch: {trials: 0, params: {train_conv.lr: {uniform: [0, 1]}}}",
            "search.trials: 0 must be at least 1",
        ),
        (
            "name: s\nmetric: m\nsearch: {trials: 3, params: {}}",
            "search.params: name at least one key",
        ),
        (
            "name: s\nmetric: m\nsearch: {trials: 3, parallel: 0, params: {train_conv.lr: "
            "{uniform: [0, 1]}}}",
            "search.parallel: 0 must be at least 1",
        ),
        (
            "name: s\nmetric: m\nsearch: {trials: 3, params: {train_conv.lrr: {uniform: [0, 1]}}}",
            "search.params.train_conv.lrr: not a key",
        ),
        (
            "name: s\nmetric: m\ngrid: {train_conv.seed: [0]}\nsearch: {trials: 3, params: "
            "{train_conv.lr: {uniform: [0, 1]}}}",
            "search: cannot be combined with grid or random",
        ),
        (
            "name: s\nmetric: m\nsearch: {trials: 3, budget: 2, params: {train_conv.lr: "
            "{uniform: [0, 1]}}}",
            "search.budget: unknown key",
        ),
    ],
)
def test_bad_sweep_files_name_the_key(tmp_path, text, message):
    with pytest.raises(spec.SpecError, match=None) as e:
        load(tmp_path, text)
    assert message in str(e.value) and str(e.value).startswith(str(tmp_path / "s.yaml"))
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(spec.SpecError, match="file not found"):
        spec.load(tmp_path / "nope.yaml", PARAMS)


def test_values_as_dvc_parses_them():
    for value in (0.001, 3, True, None, [128, 64], "cosine"):
        assert yaml.safe_load(format_value(value)) == value


def rows():
    params = {"train_conv.lr": 0.01, "train_conv.seed": 0}
    return [
        {"name": "lr-00", "status": "ok", "params": params, "seconds": 3.0, "host": "a",
         "metrics": {"conv": {"accuracy": 0.95, "loss": 0.2}, "conv.val_accuracy": 0.96}},
        {"name": "lr-01", "status": "failed", "params": params | {"train_conv.lr": -1.0},
         "seconds": 1.0, "host": "b", "error": "train_conv.lr: must be positive, got -1.0"},
        {"name": "lr-02", "status": "skipped", "params": params | {"train_conv.seed": 1},
         "metrics": {"conv": {"accuracy": 0.97, "loss": 0.1}}},
    ]  # fmt: skip


def test_table_sorted_by_the_target_metric_failures_last(tmp_path):
    s = load(
        tmp_path,
        "name: lr\nmetric: conv.accuracy\ngrid: {train_conv.lr: [1], train_conv.seed: [0]}",
    )
    df = report.table(s, rows())
    assert list(df["experiment"]) == ["lr-02", "lr-00", "lr-01"]
    assert report.best(s, df)["experiment"] == "lr-02"
    assert math.isnan(df.loc[2, "conv.accuracy"]) and df.loc[2, "error"].startswith("train_conv.lr")
    s_min = spec.Sweep("lr", "conv.loss", "min", {}, s.grid, 0, 0, {})
    assert list(report.table(s_min, rows())["experiment"]) == ["lr-02", "lr-00", "lr-01"]
    paths = report.write(s, df, tmp_path / "out")
    assert [p.name for p in paths] == ["lr.csv", "lr.md", "lr.png"]
    back = pd.read_csv(tmp_path / "out" / "lr.csv")
    assert list(back.columns[:4]) == ["experiment", "train_conv.lr", "train_conv.seed", "status"]
    md = (tmp_path / "out" / "lr.md").read_text().splitlines()
    assert md[0].startswith("# Sweep `lr`") and "| lr-02" in md[4] and "must be positive" in md[6]
    assert "conv.accuracy |   conv.val_accuracy |" in md[2] and "|                0.96 |" in md[5]
    assert (tmp_path / "out" / "lr.png").read_bytes() == report.figure_png(s, df)
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_progress_counts_and_time_left():
    p = Progress(total=10, slots=2, start=0.0)
    assert p.line(2, now=5.0) == (
        "0/10 finished (0 ran, 0 skipped, 0 failed), 2 running, 8 queued; 5s elapsed"
    )
    p.record({"status": "skipped"})
    p.record({"status": "ok", "seconds": 40.0}, now=90.0)
    p.record({"status": "ok", "seconds": 60.0}, now=110.0)
    p.record({"status": "failed", "seconds": 1.0})
    # 6 left on 2 slots at 50 s a point: 3 rounds, less the 15 s since the last one finished.
    assert p.line(2, now=125.0) == (
        "4/10 finished (2 ran, 1 skipped, 1 failed), 2 running, 4 queued; 2m05s elapsed, "
        "about 2m15s left"
    )
    assert p.line(2, now=400.0).endswith("about 0s left")


def test_error_line_prefers_the_stage_message():
    out = (
        "Running stage 'train_dense':\n> sh stages/run.sh train\n"
        "error: train_dense.lr: must be positive, got -1.0\n"
        "ERROR: failed to reproduce 'train_dense': failed to run: sh stages/run.sh, exited with 2\n"
    )
    assert error_line(out) == "train_dense.lr: must be positive, got -1.0"
    assert error_line("ERROR: failed to reproduce 'x'\n") == "failed to reproduce 'x'"
    assert error_line("boom\n\n") == "boom" and error_line("") == "no output"


def test_local_remote_paths_become_absolute(tmp_path):
    assert absolute_url("../origin.git", tmp_path / "repo") == str(tmp_path / "origin.git")
    assert absolute_url("git@host:lab/proj.git", tmp_path) == "git@host:lab/proj.git"
    assert absolute_url("https://host/proj.git", tmp_path) == "https://host/proj.git"


def test_figure_of_a_list_valued_axis(tmp_path):
    s = load(
        tmp_path, "name: h\nmetric: conv.accuracy\ngrid: {train_conv.hidden: [[64], [128, 64]]}"
    )
    rows = [
        {"name": f"h-{i:02d}", "status": "ok", "params": {"train_conv.hidden": h},
         "metrics": {"conv": {"accuracy": a}}}
        for i, (h, a) in enumerate([([64], 0.9), ([128, 64], 0.95)])
    ]  # fmt: skip
    df = report.table(s, rows)
    assert list(df["experiment"]) == ["h-01", "h-00"]
    assert report.figure_png(s, df)[:4] == b"\x89PNG"


def test_floats_as_dvc_writes_them(tmp_path):
    """DVC writes ``1e-05`` (YAML 1.2); PyYAML alone would read it as a string."""
    assert load_yaml("lr: 1e-05\nb: 3.0e-4\nname: 1e5x")["lr"] == 1e-05
    assert load_yaml("b: 3.0e-4")["b"] == 3e-4 and load_yaml("n: 1e5x")["n"] == "1e5x"
    s = load(tmp_path, "name: lr\nmetric: m\ngrid: {train_conv.lr: [1e-5, 3e-4]}")
    assert [p.params["train_conv.lr"] for p in s.points()] == [1e-5, 3e-4]
    assert s.points()[0].set_args() == ["-S", "train_conv.lr=1e-05"]


SEARCH = """
name: s
metric: conv.accuracy
set: {train_conv.epochs: 2}
search:
  trials: 8
  seed: 1
  startup: 3
  params:
    train_conv.lr: {loguniform: [1.0e-4, 1.0e-1]}
    train_conv.seed: {randint: [0, 3]}
    train_conv.schedule: {choice: [onecycle, cosine]}
    train_conv.hidden: {choice: [[64], [128, 32]]}
"""


def objective(params):
    return -abs(math.log10(params["train_conv.lr"]) + 2) + 0.1 * params["train_conv.seed"]


def run_search(sweep, n, start=None, fail=()):
    """``n`` points asked and told one at a time; the points numbered in ``fail`` fail."""
    from sweep.search import Search, index_of

    study = Search(sweep)
    study.resume(start or [])
    out = []
    for _ in range(n):
        p = study.ask()
        failed = index_of(sweep, p.name) in fail
        study.tell(p.name, None if failed else objective(p.params))
        out.append(p)
    return out


def test_search_is_seeded_per_point_and_resumes_the_same_sequence(tmp_path):
    from sweep.search import index_of

    sweep = load(tmp_path, SEARCH)
    assert sweep.swept == [
        "train_conv.lr",
        "train_conv.seed",
        "train_conv.schedule",
        "train_conv.hidden",
    ]
    with pytest.raises(ValueError, match="asked for one at a time"):
        sweep.points()
    full = run_search(sweep, 8)
    assert [p.name for p in full] == [f"s-{i:03d}" for i in range(8)]
    assert full == run_search(sweep, 8)  # the same file and seed: the same sequence
    for p in full:
        assert p.params["train_conv.epochs"] == 2
        lr = p.params["train_conv.lr"]
        assert 1e-4 <= lr <= 1e-1 and lr == float(f"{lr:.4g}")
        assert p.params["train_conv.seed"] in range(4)
        assert p.params["train_conv.schedule"] in ("onecycle", "cosine")
        assert p.params["train_conv.hidden"] in ([64], [128, 32])  # lists chosen whole
    # A run where point 3 failed, interrupted after point 4 and resumed from what origin gives
    # back (points 0-4 but 3, with their metrics): the rest is the uninterrupted run's.
    uninterrupted = run_search(sweep, 8, fail={3})
    landed = [(index_of(sweep, p.name), p.params, objective(p.params)) for p in uninterrupted[:5]]
    del landed[3]
    rest = run_search(sweep, 3, landed)
    assert [p.name for p in rest] == ["s-005", "s-006", "s-007"]
    assert [p.params for p in rest] == [p.params for p in uninterrupted[5:]]
    other = load(tmp_path, SEARCH.replace("seed: 1", "seed: 2"))
    assert run_search(other, 4) != full[:4]
    assert index_of(sweep, "s-012") == 12 and index_of(sweep, "sx-012") is None


def test_a_points_metrics_are_the_test_metrics_and_each_models_last_epoch():
    files = {
        "reports/metrics.json": '{"conv": {"accuracy": 0.9}, "dense": {"accuracy": 0.8}}',
        "reports/live/conv/metrics.json": '{"step": 1, "val_accuracy": 0.91, "train_loss": 0.3}',
    }
    assert metrics.read(files.get) == {
        "conv.accuracy": 0.9,
        "dense.accuracy": 0.8,
        "conv.val_accuracy": 0.91,  # the curves' step is not a metric
        "conv.train_loss": 0.3,
    }
    assert metrics.read({}.get) == {}
