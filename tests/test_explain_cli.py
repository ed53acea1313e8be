"""``nn-mnist explain``: the figure and the API's JSON for one image, and one line for each bad
argument, image or model."""

import json
import subprocess

import pytest
from conftest import BIN

pytestmark = pytest.mark.slow


def explain(*args, cwd):
    return subprocess.run(
        [BIN / "nn-mnist", "explain", *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )  # fmt: skip


def test_explain_writes_the_figure_and_the_json(trained, rendered, tmp_path):
    _, folder = trained
    digits, _, labels = rendered
    image = sorted(digits.glob("*.png"))[0]
    label = image.name.split("label")[1][0]
    r = explain(image, "--model", folder / "conv.npz", "-o", tmp_path / "fig.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{image}: conv.npz predicts '{label}'") and "gap" in r.stdout
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = explain(
        image, "--model", folder / "dense.npz", "--json", "--target", 3, "--unit", "1:2",
        "--steps", 64, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)
    assert a["model"] == "dense" and a["target"] == 3 and a["completeness"]["steps"] == 64
    assert a["completeness"]["relative_gap"] < 0.01
    u = a["unit"]
    assert sum(t["product"] for t in u["terms"]) + u["rest"] + u["bias"] == pytest.approx(
        u["pre_activation"], abs=1e-9
    )


def test_explain_bad_arguments_are_one_line(trained, rendered, tmp_path):
    _, folder = trained
    image = sorted(rendered[0].glob("*.png"))[0]
    conv = folder / "conv.npz"
    cases = [
        ((image, "--model", conv, "--target", 10, "--json"), 1, "target must be a class index"),
        ((image, "--model", conv, "--steps", 0, "--json"), 1, "steps must be in [1, 256], got 0"),
        ((image, "--model", conv, "--unit", "2:0", "--json"), 1, "layer 2 is ReLU"),
        ((image, "--model", conv), 1, "say where the figure goes (-o FIGURE.png)"),
        ((tmp_path / "none.png", "--model", conv, "--json"), 1, "none.png: no such file"),
        ((image, "--model", folder / "conv.onnx", "--json"), 2, "explanations need an nn model"),
        ((image, "--model", tmp_path / "x.npz", "--json"), 2, "model not found"),
    ]
    for args, status, message in cases:
        r = explain(*args, cwd=tmp_path)
        assert r.returncode == status, (args, r.stderr)
        assert r.stdout == "" and len(r.stderr.splitlines()) == 1, (args, r.stderr)
        assert r.stderr.startswith("nn-mnist explain: ") and message in r.stderr, r.stderr
