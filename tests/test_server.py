"""The web app's API (``nn-mnist serve``), through a real uvicorn server started on a free
loopback port: every route, every bad input, slow clients, hot reload of the models, and the
ONNX models. Every server started here is stopped here, within bounded time."""

import concurrent.futures
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import BAD_IMAGES, BIN, ROOT, stop

import nn
from pipeline.data import scale
from pipeline.images import prepare_image

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(folder: Path, *args, log: Path, ready=True):
    """``nn-mnist serve`` on a free port over ``folder``'s models; yields ``(url, process)``."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [BIN / "nn-mnist", "serve", "--port", str(port), "--models", folder,
             "--metrics", folder / "metrics.json", *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while ready:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server not ready in 60 s:\n" + log.read_text()
            time.sleep(0.2)
        yield url, proc
    finally:
        stop([proc], grace=10)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    _, folder = trained
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running(folder, "--body-timeout", "2", log=log) as (url, proc):
        yield url
    # SIGTERM: uvicorn shuts down cleanly, then re-raises the signal (-9 would be a kill).
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, log.read_text())
    assert "Traceback" not in log.read_text(), log.read_text()


def post_image(url, data: bytes, kind="image/png", **kw):
    return httpx.post(f"{url}/api/predict", content=data, headers={"Content-Type": kind}, **kw)


def request_head(port: int) -> bytes:
    """The first lines of a raw POST /api/predict, naming the address served as its Host."""
    return b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port


def read_all(sock) -> str:
    """What the server sends on ``sock`` until it closes the connection."""
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def one_line_error(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"]
    assert "Traceback" not in response.text
    return body["error"]


# --- routes -------------------------------------------------------------------------------------


def test_livez_readyz_and_models(server, trained):
    assert httpx.get(f"{server}/livez").json() == {"status": "alive"}
    ready = httpx.get(f"{server}/readyz").json()
    assert ready["status"] == "ready" and ready["reload_error"] is None
    _, folder = trained
    metrics = json.loads((folder / "metrics.json").read_text())
    models = httpx.get(f"{server}/api/models").json()["models"]
    assert [m["name"] for m in models] == ["conv", "dense"] == [m["name"] for m in ready["models"]]
    for m in models:
        assert m["file"] == f"{m['name']}.npz" and m["runtime"] == "nn"
        assert m["dataset"] == "mnist" and m["class_names"] == [str(c) for c in range(10)]
        assert m["accuracy"] == metrics[m["name"]]["accuracy"]
        assert (
            m["sha256"]
            == __import__("hashlib").sha256((folder / m["file"]).read_bytes()).hexdigest()
        )


def test_the_page_and_its_files_are_local(server):
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and 'id="preview"' in page.text
    assert 'type="file"' in page.text and 'name="viewport"' in page.text
    for path in ("/static/app.js", "/static/style.css"):
        r = httpx.get(server + path)
        assert r.status_code == 200, path
        # Nothing from another site: no absolute URLs at all (works offline).
        assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text
    assert "http://" not in page.text and "https://" not in page.text


def test_drawn_digits_are_classified_with_the_image_the_models_saw(server, trained, rendered):
    conv, _ = trained
    folder, originals, labels = rendered
    files = sorted(folder.iterdir())[:40]
    right = 0
    for f in files:
        kind = "image/jpeg" if f.suffix == ".jpg" else "image/png"
        r = post_image(server, f.read_bytes(), kind)
        assert r.status_code == 200, r.text
        body = r.json()
        image = np.array(body["image"], np.float32)
        assert image.shape == (28, 28)
        np.testing.assert_allclose(image, prepare_image(f.read_bytes()), atol=5e-5)
        by_name = {m["name"]: m for m in body["models"]}
        assert set(by_name) == {"conv", "dense"}
        for m in body["models"]:
            p = np.array(m["probabilities"])
            assert p.shape == (10,) and abs(p.sum() - 1) < 1e-4
            assert m["prediction"] == m["class_names"][int(p.argmax())]
        # The conv model's answer is the library's own on the same image.
        ours = nn.losses.softmax(nn.predict(conv, prepare_image(f.read_bytes())[None, None]))
        np.testing.assert_allclose(by_name["conv"]["probabilities"], ours[0], atol=1e-5)
        right += by_name["conv"]["prediction"] == f.name.split("label")[1][0]
    assert right >= 0.9 * len(files), right


def test_json_pixels_are_used_as_they_are(server, trained, mnist_folder):
    from pipeline.idx import load_mnist_split

    conv, _ = trained
    images, labels = load_mnist_split(mnist_folder, "test")
    x = scale(images[:5])
    for i in range(5):
        flat = [float(v) for v in x[i].ravel()]
        for pixels in (flat, [flat[r * 28 : r * 28 + 28] for r in range(28)]):
            r = httpx.post(f"{server}/api/predict", json={"pixels": pixels})
            assert r.status_code == 200, r.text
            body = r.json()
            np.testing.assert_allclose(body["image"], x[i, 0], atol=5e-5)
            conv_answer = next(m for m in body["models"] if m["name"] == "conv")
            expected = nn.losses.softmax(nn.predict(conv, x[i : i + 1]))[0]
            np.testing.assert_allclose(conv_answer["probabilities"], expected, atol=1e-5)


def test_concurrent_requests_get_their_own_answers(server, rendered):
    """32 requests at once (classified in shared forward passes) each get the answer they get
    alone."""
    folder, _, _ = rendered
    files = sorted(folder.glob("*.png"))[:32]
    alone = [post_image(server, f.read_bytes()).json() for f in files]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda f: post_image(server, f.read_bytes()).json(), files))
    for a, b in zip(alone, together, strict=True):
        assert a["image"] == b["image"]
        for ma, mb in zip(a["models"], b["models"], strict=True):
            assert ma["prediction"] == mb["prediction"]
            np.testing.assert_allclose(ma["probabilities"], mb["probabilities"], atol=1e-5)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_images_are_422_naming_the_problem(server, name):
    make, message = BAD_IMAGES[name]
    assert message in one_line_error(post_image(server, make()), 422)


def pixels_body(value):
    return {"pixels": [value] * 784}


@pytest.mark.parametrize(
    "body, status, message",
    [
        ('{"pixels": [0.5, 0.5]}', 422, "must have 784 values (28x28), got 2"),
        (json.dumps(pixels_body(1.5)), 422, "must be in [0, 1], got values from 1.5 to 1.5"),
        (json.dumps(pixels_body(-0.1)), 422, "must be in [0, 1]"),
        ('{"pixels": [' + ", ".join(["NaN"] * 784) + "]}", 422, "finite numbers (no NaN"),
        ('{"pixels": [' + ", ".join(["Infinity"] * 784) + "]}", 422, "finite numbers"),
        (json.dumps(pixels_body("0.5")), 422, "numbers only"),
        (json.dumps(pixels_body(True)), 422, "numbers only"),
        ('{"pixels": "abc"}', 422, "must be a list of 784 numbers"),
        ("[1, 2, 3]", 422, 'an object with "pixels"'),
        ('{"image": "/etc/passwd"}', 422, 'an object with "pixels"'),
        ("{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
    ],
)
def test_bad_pixels_are_4xx_naming_the_problem(server, body, status, message):
    r = httpx.post(
        f"{server}/api/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert message in one_line_error(r, status)


def test_wrong_type_empty_body_unknown_routes(server):
    assert "PNG or JPEG" in one_line_error(post_image(server, b"abc", "text/plain"), 415)
    assert "PNG or JPEG" in one_line_error(post_image(server, b"abc", "application/pdf"), 415)
    assert "empty body" in one_line_error(post_image(server, b""), 400)
    one_line_error(httpx.get(f"{server}/api/predict"), 405)
    one_line_error(httpx.get(f"{server}/nothing-here"), 404)
    one_line_error(httpx.get(f"{server}/static/nothing.js"), 404)
    # No request can name a file on the server: paths outside static/ are not served.
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/../../etc/passwd"):
        with httpx.Client() as client:
            request = client.build_request("GET", server + "/")
            request.url = request.url.copy_with(raw_path=path.encode())
            one_line_error(client.send(request), 404)
    r = post_image(server, b"abc", "image/png", params={"path": "/etc/passwd"})
    assert "not a PNG or JPEG" in one_line_error(r, 422)


def test_a_body_over_the_limit_is_413_without_being_read(server):
    big = bytes(3 * 1024 * 1024)
    assert "over the 2,097,152 limit" in one_line_error(post_image(server, big), 413)

    def chunks():  # no Content-Length: the server counts as it reads
        for _ in range(48):
            yield bytes(64 * 1024)

    r = httpx.post(f"{server}/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert "over the 2,097,152-byte limit" in one_line_error(r, 413)
    # A declared length over the limit is refused before the body is sent at all.
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            request_head(port) + b"Content-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n"
        )
        reply = read_all(s)
    assert reply.startswith("HTTP/1.1 413"), reply
    assert '{"error":"body of 1,000,000,000 bytes is over the 2,097,152 limit"}' in reply
    assert httpx.get(f"{server}/livez").status_code == 200


def test_a_slow_client_gets_408_and_holds_no_one_up(server, rendered):
    port = int(server.rsplit(":", 1)[1])
    digit = sorted(rendered[0].glob("*.png"))[0].read_bytes()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as slow:
        slow.sendall(
            request_head(port)
            + b"Content-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
            + digit[:100]
        )
        t0 = time.monotonic()
        assert post_image(server, digit, timeout=10).status_code == 200  # served meanwhile
        assert time.monotonic() - t0 < 5
        reply = read_all(slow)  # after the 2 s body timeout
    assert reply.startswith("HTTP/1.1 408"), reply
    assert '"error"' in reply
    # A client that connects and says nothing, or hangs up mid-body, harms no one either.
    with socket.create_connection(("127.0.0.1", port), timeout=15):
        with socket.create_connection(("127.0.0.1", port), timeout=15) as broken:
            broken.sendall(request_head(port) + b"Content-Length: 9\r\n\r\na")
        assert post_image(server, digit, timeout=10).status_code == 200


# --- models: reload, ONNX, start-up errors -------------------------------------------------------


def test_models_are_reloaded_when_their_files_change(trained, tmp_path):
    _, source = trained
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("conv.npz", "dense.npz", "metrics.json"):
        shutil.copy(source / name, folder / name)
    with running(folder, log=tmp_path / "server.log") as (url, _):
        before = {m["name"]: m for m in httpx.get(f"{url}/api/models").json()["models"]}
        # As `dvc checkout` does: new files put in place, new metrics beside them.
        conv, meta = nn.load(source / "conv.npz", with_metadata=True)
        conv.layers[-1].params["bias"][:] += 1.0
        nn.save(conv, tmp_path / "new.npz", metadata=meta)
        shutil.move(tmp_path / "new.npz", folder / "conv.npz")
        (folder / "metrics.json").write_text(json.dumps({"conv": {"accuracy": 0.5}}))
        deadline = time.monotonic() + 20
        while True:
            now = {m["name"]: m for m in httpx.get(f"{url}/api/models").json()["models"]}
            if now["conv"]["sha256"] != before["conv"]["sha256"]:
                break
            assert time.monotonic() < deadline, "the new model was not served within 20 s"
            time.sleep(0.3)
        assert now["conv"]["accuracy"] == 0.5 and now["dense"]["accuracy"] is None
        assert now["dense"]["sha256"] == before["dense"]["sha256"]
        r = httpx.post(f"{url}/api/predict", json={"pixels": [0.0] * 784}).json()
        assert (
            next(m for m in r["models"] if m["name"] == "conv")["sha256"] == now["conv"]["sha256"]
        )
        # A broken file does not take the served models down: they stay, the error is reported.
        (folder / "conv.npz").write_bytes(b"not a model")
        deadline = time.monotonic() + 20
        while (ready := httpx.get(f"{url}/readyz").json())["reload_error"] is None:
            assert time.monotonic() < deadline, ready
            time.sleep(0.3)
        assert "conv.npz" in ready["reload_error"]
        assert httpx.post(f"{url}/api/predict", json={"pixels": [0.0] * 784}).status_code == 200


def test_onnx_models_answer_as_the_nn_ones(server, trained, rendered, tmp_path):
    _, folder = trained
    files = sorted(rendered[0].glob("*.png"))[:10]
    with running(folder, "--format", "onnx", log=tmp_path / "server.log") as (url, _):
        models = httpx.get(f"{url}/api/models").json()["models"]
        assert [(m["file"], m["runtime"]) for m in models] == [
            ("conv.onnx", "onnxruntime"),
            ("dense.onnx", "onnxruntime"),
        ]
        for f in files:
            theirs = post_image(url, f.read_bytes()).json()
            ours = post_image(server, f.read_bytes()).json()
            for a, b in zip(theirs["models"], ours["models"], strict=True):
                assert a["prediction"] == b["prediction"]
                np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-4)


def test_serve_without_models_or_with_a_taken_port_is_one_line(tmp_path):
    def serve(*args):
        return subprocess.run(
            [BIN / "nn-mnist", "serve", *map(str, args)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip

    r = serve("--models", tmp_path / "nowhere")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (
        f"nn-mnist serve: {tmp_path / 'nowhere'}: no such folder of models (run `make repro` "
        "first)\n"
    )
    (tmp_path / "empty").mkdir()
    r = serve("--models", tmp_path / "empty")
    assert r.returncode == 2 and "no .npz models in it" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = serve("--port", "70000")
    assert r.returncode == 2 and r.stderr == "nn-mnist serve: --port must be 1-65535, got 70000\n"


def test_a_taken_port_is_one_line(trained, tmp_path):
    _, folder = trained
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [BIN / "nn-mnist", "serve", "--port", str(port), "--models", folder],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 2, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f"nn-mnist serve: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in r.stderr


def test_serve_help_names_the_defaults():
    r = subprocess.run(
        [sys.executable, "-m", "nn_mnist", "serve", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "127.0.0.1" in r.stdout and "8000" in r.stdout


# --- uploads as forms, and /api/explain -------------------------------------------------------


def test_a_form_upload_is_classified_as_the_raw_body(server, rendered):
    folder, _, _ = rendered
    for f in sorted(folder.iterdir())[:4]:
        kind = "image/jpeg" if f.suffix == ".jpg" else "image/png"
        raw = post_image(server, f.read_bytes(), kind).json()
        for url in (f"{server}/api/predict", f"{server}/api/explain?model=dense"):
            r = httpx.post(url, files={"file": (f.name, f.read_bytes(), kind)})
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(r.json()["image"], raw["image"], atol=6e-5)
    bad = httpx.post(f"{server}/api/predict", files={"file": ("a.png", b"not an image")})
    assert one_line_error(bad, 422) == "image: not a PNG or JPEG image"
    no_file = httpx.post(f"{server}/api/predict", data={"name": "x"}, files={})
    assert "PNG or JPEG" in one_line_error(no_file, 415)  # a urlencoded form is not an image
    empty = httpx.post(
        f"{server}/api/predict",
        content=b'--xx\r\nContent-Disposition: form-data; name="a"\r\n\r\nhi\r\n--xx--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert "the form has no file" in one_line_error(empty, 422)
    broken = post_image(server, b"garbage", "multipart/form-data; boundary=xx")
    assert one_line_error(broken, 400).startswith("form: ")


def explain_json(url, pixels, **query):
    return httpx.post(f"{url}/api/explain", params=query, json={"pixels": pixels.tolist()})


@pytest.mark.parametrize("name", ["conv", "dense"])
def test_explain_answers_every_field_from_the_library(server, trained, mnist_folder, name):
    """Every field the page draws, equal to nn.explain's numbers for the same model and image."""
    from nn import explain
    from pipeline.idx import load_mnist_split

    _, folder = trained
    model = nn.load(folder / f"{name}.npz").eval()
    images, _ = load_mnist_split(mnist_folder, "test")
    x = scale(images[:1])
    r = explain_json(server, x[0, 0], model=name, target=3, steps=16)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["model"] == name and a["target"] == 3 and a["file"] == f"{name}.npz"
    assert (
        a["sha256"] == __import__("hashlib").sha256((folder / a["file"]).read_bytes()).hexdigest()
    )
    np.testing.assert_allclose(a["image"], x[0, 0], atol=1e-6)
    outputs = explain.layer_outputs(model, x)
    assert [layer["index"] for layer in a["layers"]] == list(range(len(model.layers)))
    for layer, out in zip(a["layers"], outputs, strict=True):
        assert layer["type"] == type(model.layers[layer["index"]]).__name__
        assert layer["shape"] == list(out.shape[1:])
        np.testing.assert_allclose(layer["values"], out[0], atol=1e-5)
    np.testing.assert_allclose(a["logits"], outputs[-1][0], atol=1e-5)
    np.testing.assert_allclose(a["probabilities"], nn.losses.softmax(outputs[-1])[0], atol=1e-6)
    np.testing.assert_allclose(a["saliency"], explain.saliency(model, x, 3)[0, 0], atol=1e-6)
    ig, c = explain.integrated_gradients(model, x, 3, steps=16)
    np.testing.assert_allclose(a["integrated_gradients"], ig[0, 0], atol=1e-6)
    assert a["completeness"]["steps"] == 16
    assert a["completeness"]["expected"] == pytest.approx(c.expected)
    assert np.array(a["saliency"]).shape == np.array(a["integrated_gradients"]).shape == (28, 28)
    if name == "conv":
        np.testing.assert_allclose(a["filters"], model.layers[0].params["weight"], atol=1e-6)
        assert np.array(a["grad_cam"]).shape == (28, 28)
    else:
        assert "filters" not in a and "grad_cam" not in a
    # The predicted class when no target is asked for.
    a = explain_json(server, x[0, 0], model=name).json()
    assert a["target"] == int(outputs[-1][0].argmax()) == a["prediction"]
    # A unit's arithmetic: the terms sum to the pre-activation, which is the layer's output.
    layer = next(i for i, lay in enumerate(model.layers) if isinstance(lay, nn.Dense))
    u = explain_json(server, x[0, 0], model=name, unit=f"{layer}:5").json()["unit"]
    assert u == explain.unit(model, x, layer, 5)
    total = sum(t["product"] for t in u["terms"]) + u["rest"] + u["bias"]
    assert total == pytest.approx(u["pre_activation"], abs=1e-9)
    assert u["output"] == pytest.approx(outputs[layer][0, 5], abs=1e-9)


@pytest.mark.parametrize(
    "query, message",
    [
        ({"model": "nope"}, "model: no served model named 'nope' (served: conv, dense)"),
        ({"target": "10"}, "target must be a class index in [0, 10), got 10"),
        ({"target": "-1"}, "target must be a class index in [0, 10), got -1"),
        ({"target": "seven"}, "target must be an integer, got 'seven'"),
        ({"steps": "0"}, "steps must be in [1, 256], got 0"),
        ({"steps": "100000"}, "steps must be in [1, 256], got 100000"),
        ({"steps": "1e3"}, "steps must be an integer, got '1e3'"),
        ({"unit": "3"}, "unit must be LAYER:INDEX (two integers), got '3'"),
        ({"unit": "a:b"}, "unit's layer must be an integer, got 'a'"),
        ({"unit": "2:0"}, "unit: layer 2 is ReLU; units are outputs of Dense or Conv2D layers"),
        ({"unit": "0:4608"}, "unit: index must be in [0, 4608) for layer 0, got 4608"),
        ({"unit": "99:0"}, "unit: layer must be in [0, 8), got 99"),
    ],
)
def test_explain_bad_parameters_are_one_line_422(server, query, message):
    r = explain_json(server, np.zeros((28, 28)), **query)
    assert one_line_error(r, 422) == message


def test_explain_refuses_bad_images_and_onnx_models(server, trained, tmp_path):
    r = httpx.post(f"{server}/api/explain", content=b"abc", headers={"Content-Type": "image/png"})
    assert one_line_error(r, 422) == "image: not a PNG or JPEG image"
    _, folder = trained
    with running(folder, "--format", "onnx", log=tmp_path / "server.log") as (url, _):
        r = explain_json(url, np.zeros((28, 28)))
        assert one_line_error(r, 422) == (
            "conv.onnx runs on onnxruntime: explanations need the nn model "
            "(.npz; serve --format npz)"
        )
