"""The page in a real browser: Playwright drives Debian's ``chromium`` (headless) against
``nn-mnist serve`` on a free loopback port, draws MNIST test digits with mouse strokes, and reads
what the page shows. ``.ci/run`` installs chromium where it is missing and sets REQUIRE_BROWSER=1,
so CI fails rather than skips without it."""

import base64
import os
import shutil

import numpy as np
import pytest
from test_server import running

from pipeline.images import prepare_image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail("chromium is not installed (apt-get install -y chromium)", pytrace=False)
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

INK = 128  # a digit's pixels darker than this (of 255) are traced


@pytest.fixture(scope="module")
def url(trained, tmp_path_factory):
    _, folder = trained
    with running(folder, log=tmp_path_factory.mktemp("browser") / "server.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            timeout=60_000,
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, url):
    context = browser.new_context(viewport={"width": 900, "height": 720})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    yield page
    context.close()
    assert not errors, errors


def draw(page, digit: np.ndarray, slant: float = 0.0) -> None:
    """Trace the 28x28 ``digit`` onto the pad with the mouse: one stroke along each run of ink in
    each row, scaled up to the canvas's size on screen, each row moved right by ``slant`` times
    its height above the middle (a forward slant); then wait for the page's answer."""
    box = page.locator("#pad").bounding_box()
    cell = box["width"] / 28
    for r in range(28):
        ink = np.flatnonzero(digit[r] > INK)
        if not len(ink):
            continue
        runs = np.split(ink, np.flatnonzero(np.diff(ink) > 1) + 1)
        shift = slant * (13.5 - r)
        for run in runs:
            y = box["y"] + (r + 0.5) * cell
            page.mouse.move(box["x"] + (run[0] + 0.5 + shift) * cell, y)
            page.mouse.down()
            page.mouse.move(box["x"] + (run[-1] + 0.5 + shift) * cell, y)
            page.mouse.up()
    page.wait_for_function("!document.body.dataset.busy && document.body.dataset.answers > 0")


def shown(page) -> dict:
    """What the page shows: each model's answer, and the 28x28 preview's pixels (0-255)."""
    answers = page.locator(".model").evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.dataset.model, e.dataset.prediction]))"
    )
    pixels = page.evaluate(
        "() => Array.from(document.getElementById('preview').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))"
    )
    return {"answers": answers, "preview": np.array(pixels, np.float32).reshape(28, 28)}


def pad_png(page) -> bytes:
    data_url = page.evaluate("() => document.getElementById('pad').toDataURL('image/png')")
    return base64.b64decode(data_url.split(",", 1)[1])


def test_digits_drawn_with_the_mouse_are_classified_and_previewed(page, mnist_folder, tmp_path):
    from pipeline.idx import load_mnist_split

    images, labels = load_mnist_split(mnist_folder, "test")
    right = {"conv": 0, "dense": 0}
    n = 20
    for i in range(n):
        page.click("#clear")
        draw(page, images[i])
        seen = shown(page)
        assert set(seen["answers"]) == {"conv", "dense"}
        for name, answer in seen["answers"].items():
            right[name] += answer == str(labels[i])
        # The preview is the server's preparation of what is on the pad.
        expected = prepare_image(pad_png(page)) * 255
        np.testing.assert_allclose(seen["preview"], expected, atol=1.01, err_msg=f"digit {i}")
        assert seen["preview"].max() > 200  # white ink on black, as MNIST
    page.screenshot(path=tmp_path / "page.png")
    print(f"drawn digits right of {n}: {right}")
    assert right["conv"] >= 0.8 * n and right["dense"] >= 0.7 * n, right
    footer = page.locator("#models").inner_text()
    assert "conv.npz" in footer and "dense.npz" in footer and "mnist" in footer
    assert "test accuracy" in footer


def test_a_thin_pen_a_thick_pen_and_a_slant(page, mnist_folder):
    """Other writers: the page's thin and thick pens, and digits slanted forward, are prepared as
    MNIST's digits (the preview is the server's preparation of the pad) and read."""
    from pipeline.idx import load_mnist_split

    images, labels = load_mnist_split(mnist_folder, "test")
    n, ink, right = 10, {}, {}
    for style, pen, slant in (
        ("thin", "thin", 0.0),
        ("thick", "thick", 0.0),
        ("slant", "medium", 0.35),
    ):
        page.select_option("#pen", pen)
        ink[style], right[style] = [], {"conv": 0, "dense": 0}
        for i in range(n):
            page.click("#clear")
            draw(page, images[i], slant)
            seen = shown(page)
            expected = prepare_image(pad_png(page)) * 255
            np.testing.assert_allclose(seen["preview"], expected, atol=1.01, err_msg=style)
            ink[style].append(float((seen["preview"] > 128).mean()))
            for name, answer in seen["answers"].items():
                right[style][name] += answer == str(labels[i])
    print(f"drawn digits right of {n}, by pen and slant: {right}")
    assert np.mean(ink["thick"]) > 1.3 * np.mean(ink["thin"])  # the pens differ where it counts
    for style, counts in right.items():
        assert counts["conv"] >= 0.7 * n and counts["dense"] >= 0.7 * n, (style, counts)


def test_bars_clear_and_upload(page, rendered):
    folder, _, _ = rendered

    draw(page, np.pad(np.full((10, 4), 255, np.uint8), ((9, 9), (12, 12))))  # a "1"
    bars = page.locator(".model").first.locator(".bar")
    assert bars.count() == 10
    assert page.locator(".model").first.locator(".bar .name").all_inner_texts() == [
        str(c) for c in range(10)
    ]
    page.click("#clear")
    assert page.locator(".model").count() == 0
    # Upload: a photo-like image of a digit (dark on light, off centre) from a file.
    files = sorted(folder.glob("*.png"))[:3]
    for f in files:
        page.set_input_files("#file", f)
        page.wait_for_function("!document.body.dataset.busy && document.body.dataset.answers > 0")
        label = f.name.split("label")[1][0]
        assert shown(page)["answers"]["conv"] == label, f.name
        expected = prepare_image(f.read_bytes()) * 255
        np.testing.assert_allclose(shown(page)["preview"], expected, atol=1.01)
    # A file that is not an image: the server's one-line error on the page, nothing else.
    bad = folder.parent / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", bad)
    page.wait_for_function("document.getElementById('status').textContent.length > 0")
    assert page.locator("#status").inner_text() == "image: not a PNG or JPEG image"


def test_the_page_fits_a_phone(browser, url):
    context = browser.new_context(
        viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True,
        device_scale_factor=2,
    )  # fmt: skip
    page = context.new_page()
    try:
        page.goto(url)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, width  # no sideways scrolling
        box = page.locator("#pad").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375 and box["width"] >= 280
        assert box["width"] == pytest.approx(box["height"], abs=1)
        for control in ("#clear", ".upload", "#preview"):
            b = page.locator(control).bounding_box()
            assert b["x"] + b["width"] <= 375, control
        # A finger's tap is a stroke too (touch input arrives as pointer events).
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("document.body.dataset.answers > 0 && !document.body.dataset.busy")
        assert page.locator(".model").count() == 2
        # Look inside fits too: every layer's row, the heatmaps and a unit's table.
        page.tap("#inside summary")
        page.wait_for_function(
            "document.body.dataset.inside > 0 && !document.body.dataset.insideBusy"
        )
        page.locator('#layers .layer[data-type="Dense"] canvas.strip').last.tap()
        page.wait_for_selector("#unit:not([hidden])")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, width
    finally:
        context.close()


def explain_png(url, data: bytes, **query) -> dict:
    import httpx

    r = httpx.post(
        f"{url}/api/explain", params=query, content=data, headers={"Content-Type": "image/png"}
    )
    assert r.status_code == 200, r.text
    return r.json()


def canvas_pixels(page, selector) -> np.ndarray:
    """The RGB pixels of the canvas ``selector`` as drawn (its own resolution)."""
    data = page.locator(selector).evaluate(
        "c => ({w: c.width, h: c.height, d: Array.from(c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data)})"
    )
    return np.array(data["d"], np.float64).reshape(data["h"], data["w"], 4)[..., :3]


def test_look_inside_shows_the_apis_numbers(page, url, mnist_folder):
    from pipeline.idx import load_mnist_split

    requests = []
    page.on("request", lambda r: requests.append(r.url))
    images, labels = load_mnist_split(mnist_folder, "test")
    draw(page, images[0])  # a 7
    page.click("#inside summary")
    page.wait_for_function("document.body.dataset.inside > 0 && !document.body.dataset.insideBusy")
    api = explain_png(url, pad_png(page), model="conv")
    # One row per layer, in order, named as the API names them.
    rows = page.locator("#layers .layer")
    assert rows.count() == len(api["layers"])
    assert rows.evaluate_all("els => els.map(e => e.dataset.type)") == [
        layer["type"] for layer in api["layers"]
    ]
    # A drawn feature map is the API's values under the page's grey scale (lo..hi of the layer).
    first = np.array(api["layers"][0]["values"])  # (channels, 24, 24)
    lo, hi = first.min(), first.max()
    for k in (0, first.shape[0] - 1):
        drawn = canvas_pixels(page, f'.layer[data-index="0"] canvas.fmap[data-channel="{k}"]')
        expected = np.round(255 * (first[k] - lo) / (hi - lo))
        np.testing.assert_allclose(drawn[..., 0], expected, atol=1.0)
    # The heatmap is the saliency of the predicted class; another class's bar changes it.
    heat = '#attributions figure[data-model="conv"] canvas.heatmap'
    assert page.locator('#attributions figure[data-model="conv"]').get_attribute(
        "data-target"
    ) == str(api["target"])
    sal = np.array(api["saliency"])
    drawn = canvas_pixels(page, heat)
    m = np.abs(sal).max()
    fade = np.round(255 * (1 - np.clip(np.abs(sal) / m, 0, 1)))
    np.testing.assert_allclose(drawn[..., 1], fade, atol=1.0)  # green fades with |value|
    before = drawn
    other = 3 if api["target"] != 3 else 2
    n = int(page.evaluate("document.body.dataset.inside"))
    page.locator(f'.model[data-model="conv"] .bar[data-index="{other}"]').click()
    page.wait_for_function(
        f"document.body.dataset.inside > {n} && !document.body.dataset.insideBusy"
    )
    fig = page.locator('#attributions figure[data-model="conv"]')
    assert fig.get_attribute("data-target") == str(other)
    assert not np.array_equal(canvas_pixels(page, heat), before)
    # Integrated gradients on the same scale rule.
    page.select_option("#inside-method", "integrated_gradients")
    assert fig.get_attribute("data-method") == "integrated_gradients"
    # A unit's arithmetic: the numbers the API gives for it.
    dense = next(layer["index"] for layer in api["layers"] if layer["type"] == "Dense")
    strip = page.locator(f'.layer[data-index="{dense}"] canvas.strip')
    box = strip.bounding_box()
    strip.click(position={"x": box["width"] / 10 * 4.5, "y": box["height"] / 2})  # unit 4
    page.wait_for_selector("#unit:not([hidden])")
    assert page.locator("#unit").get_attribute("data-index") == "4"
    unit = explain_png(url, pad_png(page), model="conv", target=other, unit=f"{dense}:4")["unit"]
    shown = page.locator("#unit tr.pre td.v").inner_text()
    assert float(shown) == pytest.approx(unit["pre_activation"], rel=1e-5)
    products = [float(t) for t in page.locator("#unit tr.term td.p").all_inner_texts()]
    np.testing.assert_allclose(products, [t["product"] for t in unit["terms"]], rtol=1e-5)
    # Compare: the same drawing through both models, and their difference.
    n = int(page.evaluate("document.body.dataset.inside"))
    page.select_option("#inside-compare", "dense")
    page.wait_for_function(
        f"document.body.dataset.inside > {n} && !document.body.dataset.insideBusy"
    )
    models = page.locator("#attributions figure[data-model]").evaluate_all(
        "els => els.map(e => e.dataset.model)"
    )
    assert models == ["conv", "dense"]
    assert page.locator("#attributions figure.difference").count() == 1
    # Nothing left this machine.
    assert requests and all(r.startswith(url) or r.startswith("data:") for r in requests), requests
