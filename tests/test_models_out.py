"""Models that leave the pipeline: ONNX export against ONNX Runtime, the image preparation that
``predict`` and the web app share, and ``nn-mnist predict`` on real MNIST digits drawn the way
people write them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BAD_IMAGES, ROOT, bomb, hand_made, png
from PIL import Image

import nn
from pipeline import export
from pipeline.data import scale
from pipeline.errors import PipelineError
from pipeline.images import prepare_image, prepare_pixels
from pipeline.inference import load_classifier

GOLDEN = ROOT / "tests" / "data" / "golden_prepared.npz"
CLI = Path(sys.executable).parent / "nn-mnist"

# --- export -------------------------------------------------------------------------------------


def every_layer_model(rng):
    """A model with every layer nn can put in one (stride and padding, BatchNorm on 4D and 2D
    input with non-trivial running statistics, Reshape, Dropout), in eval mode."""
    model = nn.Sequential(
        [
            nn.Conv2D(1, 3, 3, stride=2, padding=1, rng=rng),
            nn.BatchNorm(3),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Tanh(),
            nn.Flatten(),
            nn.Dropout(0.5, rng=rng),
            nn.Dense(3 * 7 * 7, 12, rng=rng),
            nn.BatchNorm(12),
            nn.Sigmoid(),
            nn.Reshape((3, 4)),
            nn.Flatten(),
            nn.Dense(12, 5, rng=rng),
            nn.Softmax(),
        ]
    )
    for layer in model.layers:
        if isinstance(layer, nn.BatchNorm):
            c = layer.num_features
            layer.buffers["running_mean"][...] = rng.normal(0, 0.5, c)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
            layer.params["gamma"][...] = rng.uniform(0.5, 1.5, c)
            layer.params["beta"][...] = rng.normal(0, 0.3, c)
    return model


def test_every_layer_exports_and_matches_onnx_runtime():
    rng = np.random.default_rng(0)
    model = every_layer_model(rng)
    onnx_model = export.to_onnx(model, 5, {"dataset": "mnist"})
    ops = [n.op_type for n in onnx_model.graph.node]
    for op in ("Conv", "Mul", "Add", "Relu", "MaxPool", "Tanh", "Flatten", "Gemm", "Sigmoid"):
        assert op in ops
    assert "Reshape" in ops and "Softmax" in ops and "Dropout" not in ops
    assert onnx_model.opset_import[0].version == export.OPSET
    assert onnx_model.ir_version == export.IR_VERSION
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    theirs = export.run_onnx(export.session(export.onnx_bytes(onnx_model)), x)
    ours = nn.predict(model, x)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_export_is_byte_identical_and_metadata_sorted():
    meta = {"z": "1", "a": "2", "dataset": "mnist"}
    first = export.onnx_bytes(export.to_onnx(every_layer_model(np.random.default_rng(1)), 5, meta))
    again = export.to_onnx(every_layer_model(np.random.default_rng(1)), 5, meta)
    assert export.onnx_bytes(again) == first
    assert [p.key for p in again.metadata_props] == ["a", "dataset", "z"]


def test_a_layer_without_onnx_form_is_named():
    class Swish(nn.Layer):
        def forward(self, x):
            return x

    model = nn.Sequential([nn.Flatten(), nn.Dense(784, 3, rng=0), Swish()])
    with pytest.raises(export.UnexportableLayer, match=r"^layer 2 \(Swish\) has no ONNX export$"):
        export.to_onnx(model, 3, {})


# --- image preparation --------------------------------------------------------------------------


def test_golden_28x28_arrays_of_hand_made_images():
    with np.load(GOLDEN, allow_pickle=False) as golden:
        for name, data in hand_made().items():
            np.testing.assert_allclose(prepare_image(data), golden[name], atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", ["bar", "ell", "ring"])
def test_prepared_like_mnist(name):
    out = prepare_image(hand_made()[name])
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() == 0 and 0.9 < out.max() <= 1
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (20, 21, 22)  # 20 px + antialiasing
    total = out.sum()
    cy = (out.sum(axis=1) * np.arange(28)).sum() / total
    cx = (out.sum(axis=0) * np.arange(28)).sum() / total
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6


def test_either_ink_colour_gives_the_same_digit():
    rng = np.random.default_rng(0)
    grey = np.zeros((90, 70), np.float32)
    grey[20:70, 30:38] = rng.uniform(0.8, 1.0, (50, 8))
    np.testing.assert_allclose(prepare_pixels(grey), prepare_pixels(1 - grey), atol=1e-6)


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_images_name_the_problem(name):
    make, message = BAD_IMAGES[name]
    data = make()
    with pytest.raises(PipelineError, match=None) as e:
        prepare_image(data)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_bomb_file_is_small():
    assert len(bomb()) < 200_000


# --- predict ------------------------------------------------------------------------------------


def predict(*args, check=None):
    result = subprocess.run(
        [str(CLI), "predict", *map(str, args)], capture_output=True, text=True, timeout=120
    )
    if check is not None:
        assert result.returncode == check, result.stdout + result.stderr
    return result


def test_predict_on_drawn_digits_matches_the_models_accuracy(trained, rendered):
    model, folder = trained
    digits, originals, labels = rendered
    files = sorted(digits.iterdir())
    assert {f.suffix for f in files} == {".png", ".jpg"}
    out = json.loads(predict(*files, "--model", folder / "conv.npz", "--json", check=0).stdout)
    got = [int(r["class"]) for r in out["predictions"]]
    truth = [int(re.search(r"label(\d)", r["file"]).group(1)) for r in out["predictions"]]
    drawn = np.mean(np.array(got) == np.array(truth))
    direct = np.mean(nn.predict(model, scale(originals)).argmax(axis=1) == labels)
    assert direct > 0.9
    assert abs(drawn - direct) <= 0.01, (drawn, direct)
    # The exported file through ONNX Runtime answers the same.
    onnx_out = json.loads(
        predict(*files, "--model", folder / "conv.onnx", "--json", check=0).stdout
    )
    assert onnx_out["runtime"] == "onnxruntime"
    assert [r["class"] for r in onnx_out["predictions"]] == [str(c) for c in got]


def test_predict_prints_one_line_per_image(trained, rendered):
    _, folder = trained
    first = sorted(rendered[0].iterdir())[0]
    out = predict(first, "--model", folder / "conv.npz", check=0).stdout.splitlines()
    assert len(out) == 1
    assert re.fullmatch(rf"{re.escape(str(first))}: 7 \(\d+\.\d%\)  top 3: 7 .*, .*, .*", out[0])


def test_predict_bad_inputs_fail_alone(trained, rendered, tmp_path):
    _, folder = trained
    good = sorted(rendered[0].iterdir())[0]
    (tmp_path / "notes.png").write_text("not an image at all")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:300] if good.suffix == ".png" else b"")
    (tmp_path / "blank.png").write_bytes(png(Image.new("L", (64, 64), 255)))
    (tmp_path / "bomb.png").write_bytes(bomb())
    (tmp_path / "folder").mkdir()
    bad = ["notes.png", "cut.png", "blank.png", "bomb.png", "folder"]
    result = predict(good, *(tmp_path / b for b in bad), "--model", folder / "conv.npz", check=1)
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and lines[0].startswith(f"{good}: 7 ")
    assert lines[1] == f"{tmp_path / 'notes.png'}: error: not a PNG or JPEG image"
    assert lines[2].startswith(f"{tmp_path / 'cut.png'}: error: ") and "truncated" in lines[2]
    assert lines[3] == f"{tmp_path / 'blank.png'}: error: no ink found (an empty page?)"
    assert (
        lines[4]
        == f"{tmp_path / 'bomb.png'}: error: more than 40,000,000 pixels (a decompression bomb?)"
    )
    assert lines[5] == f"{tmp_path / 'folder'}: error: is a directory, not an image"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("data.npz", "npz", "not an nn model file"),
        ("model.onnx", b"\x08\x01garbage", "not an ONNX model ONNX Runtime can run"),
        ("model.txt", b"hello", "not a model file (expected .npz from nn or .onnx)"),
        ("missing.npz", None, "model not found"),
    ],
)
def test_a_model_of_the_wrong_kind_is_one_line(rendered, tmp_path, name, content, message):
    path = tmp_path / name
    if content == "npz":
        np.savez(path, x=np.zeros(3))
    elif content is not None:
        path.write_bytes(content)
    result = predict(sorted(rendered[0].iterdir())[0], "--model", path, check=2)
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"nn-mnist predict: {path}: ") and message in line
    with pytest.raises(PipelineError, match=re.escape(message)):
        load_classifier(path)


def test_fashion_items_are_framed_as_fashion_mnist_frames_them(mnist_folder):
    """A product photo (a Fashion-MNIST test image enlarged 10x, dark on light, off centre) comes
    back close to the original for a Fashion-MNIST model (item filling the 28x28 field, centred by
    its box), and not for an MNIST one (ink in a 20-pixel box)."""
    from PIL import Image

    from pipeline.idx import load_mnist_split

    # The real files: ../shared/data/fashion_mnist beside the repository (as CI has them).
    candidates = [
        ROOT.parent / "shared" / "data" / "fashion_mnist",
        mnist_folder.parent / "fashion_mnist",
    ]
    folder = next((c for c in candidates if c.exists()), None)
    if folder is None:
        pytest.skip(f"no Fashion-MNIST files in {candidates[0]}")
    images, _ = load_mnist_split(folder, "test")
    fashion_err, mnist_err = [], []

    def error(prepared, original):  # the least mean difference over shifts of up to a pixel
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        return min(np.abs(np.roll(prepared, s, axis=(0, 1)) - original).mean() for s in shifts)

    def longer_side(a):
        rows, cols = np.flatnonzero(a.max(axis=1) > 0.1), np.flatnonzero(a.max(axis=0) > 0.1)
        return max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1

    for img in images[:20]:
        big = Image.fromarray(255 - img).resize((280, 280), Image.Resampling.BICUBIC)
        page = Image.new("L", (400, 330), 255)
        page.paste(big, (70, 20))
        data = png(page)
        original = img.astype(np.float32) / 255
        as_fashion, as_mnist = prepare_image(data, "fashion_mnist"), prepare_image(data, "mnist")
        assert abs(longer_side(as_fashion) - longer_side(original)) <= 1
        assert longer_side(as_mnist) <= 21
        fashion_err.append(error(as_fashion, original))
        mnist_err.append(error(as_mnist, original))
    # Measured: 0.052 against 0.169 (resampling twice and the contrast stretch cost the rest).
    assert np.mean(fashion_err) < 0.06, np.mean(fashion_err)
    assert np.mean(mnist_err) > 2.5 * np.mean(fashion_err)
