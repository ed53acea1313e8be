"""End to end: the real ``dvc repro`` in a temporary git repository, on a tiny subset."""

import hashlib
import json
import shutil

import pytest
import yaml
from conftest import BIN, run, set_params


@pytest.fixture(scope="module")
def env(e2e_env):
    return e2e_env


@pytest.fixture(scope="module")
def repo(e2e_repo):
    return e2e_repo


def dvc(repo, env, *args, check=True):
    return run([BIN / "dvc", *args], repo, env, check=check)


@pytest.mark.slow
def test_repro_writes_every_report(reproduced):
    repo = reproduced
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"dense", "conv"}
    for m in metrics.values():
        assert set(m) == {"accuracy", "loss", "macro_f1", "robustness"}
        assert 0.3 < m["accuracy"] <= 1.0
        assert 0.1 < m["robustness"] <= 1.0  # the traced digits of its classes
    per_class = json.loads((repo / "reports" / "per_class.json").read_text())
    assert set(per_class["conv"]) == {"0", "1", "7"}
    conv_rows = (repo / "reports" / "confusion" / "conv.csv").read_text().splitlines()
    assert conv_rows[0] == "actual,predicted" and len(conv_rows) == 1 + 980 + 1135 + 1028
    figures = sorted(p.name for p in (repo / "reports" / "figures").iterdir())
    assert figures == [
        "confusion_conv.png",
        "confusion_dense.png",
        "curves.png",
        "filters_conv.png",
        "misclassified_conv.png",
        "misclassified_dense.png",
        "mistakes_conv.png",
        "mistakes_dense.png",
        "weights_dense.png",
    ]
    environment = json.loads((repo / "reports" / "environment.json").read_text())
    assert environment["blas_threads"] == 1 and len(environment["fingerprint"]) == 64


@pytest.mark.slow
def test_training_curves_through_dvclive(reproduced):
    live = reproduced / "reports" / "live" / "dense"
    history = (live / "plots" / "metrics" / "val_accuracy.tsv").read_text().splitlines()
    assert history[0] == "step\tval_accuracy"
    assert [r.split("\t")[0] for r in history[1:]] == ["0", "1"]
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 1
    assert set(summary) == {"step", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert "timestamp" not in history[0]


@pytest.mark.slow
def test_nothing_changed_nothing_reruns(reproduced, env):
    assert "didn't change, skipping" in dvc(reproduced, env, "repro").stdout
    assert dvc(reproduced, env, "status").stdout.strip().endswith("up to date.")


@pytest.mark.slow
def test_a_forced_rerun_is_byte_identical(reproduced, env):
    repo = reproduced
    lock = (repo / "dvc.lock").read_text()
    figure_bytes = (repo / "reports" / "figures" / "curves.png").read_bytes()
    dvc(repo, env, "repro", "--force")
    assert (repo / "dvc.lock").read_text() == lock
    assert (repo / "reports" / "figures" / "curves.png").read_bytes() == figure_bytes


@pytest.mark.slow
def test_verify_passes_then_names_each_difference(reproduced, env):
    repo = reproduced
    # make verify: a rerun from nothing in a clone matches the committed dvc.lock ...
    verify = run([BIN / "python", "tools/verify.py"], repo, env)
    assert verify.stdout.strip().endswith("every output matches the committed dvc.lock")
    # ... and names each output and environment value that does not.
    environment = json.loads((repo / "reports" / "environment.json").read_text())
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    conv_md5 = lock["stages"]["train_conv"]["outs"][0]["md5"]
    lock["stages"]["train_conv"]["outs"][0]["md5"] = "0" * 32
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    (repo / "reports" / "environment.json").write_text(
        json.dumps(environment | {"fingerprint": "f" * 64})
    )
    run(["git", "commit", "-qam", "results from another machine"], repo, env)
    try:
        verify = run([BIN / "python", "tools/verify.py"], repo, env, check=False)
    finally:
        run(["git", "reset", "-q", "--hard", "HEAD~1"], repo, env)
        dvc(repo, env, "checkout", "-q")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert verify.stdout.splitlines()[-3:] == [
        f"verify: differs: models/conv.npz (committed 000000000000, here {conv_md5[:12]})",
        f"verify: environment: fingerprint: committed {'f' * 64!r}, "
        f"here {environment['fingerprint']!r}",
        "verify: FAILED: 2 difference(s) from the committed results",
    ]


@pytest.mark.slow
def test_plots_page_renders_offline_one_panel_per_quantity(reproduced, env):
    dvc(reproduced, env, "plots", "show")
    page = (reproduced / "dvc_plots" / "index.html").read_text()
    assert "vegaEmbed(" in page and "Validation accuracy per epoch" in page
    assert "cdn.jsdelivr" not in page and "<script src=" not in page
    # Four curves with both models in each, and the two confusion matrices: each drawn once.
    assert page.count("vegaEmbed(") == 6, page.count("vegaEmbed(")


@pytest.fixture(scope="module")
def wider(reproduced, env):
    """One experiment of the tiny pipeline, ``wider``, run in the workspace (as ``dvc exp run``
    does), with what ``exp run``, ``exp show`` and ``metrics diff`` said; the workspace is put
    back to the baseline afterwards."""
    repo = reproduced
    try:
        out = dvc(repo, env, "exp", "run", "-n", "wider", "-S", "train_dense.hidden=[24]").stdout
        shown = json.dumps(json.loads(dvc(repo, env, "exp", "show", "--json").stdout))
        diff = dvc(repo, env, "metrics", "diff", "--json").stdout
    finally:
        run(["git", "checkout", "--", "."], repo, env)
        dvc(repo, env, "checkout", "-q")
    return {"name": "wider", "run": out, "show": shown, "metrics_diff": diff}


@pytest.mark.slow
def test_an_experiment_reruns_only_what_depends_on_it(wider):
    out = wider["run"]
    assert "Running stage 'train_dense'" in out and "Running stage 'train_conv'" not in out
    assert "train_dense" in wider["show"] and '"hidden": [24]' in wider["show"]
    assert "dense" in wider["metrics_diff"]


@pytest.mark.slow
def test_share_through_a_local_remote(reproduced, env, tmp_path):
    repo = reproduced
    remote = tmp_path / "remote"
    dvc(repo, env, "remote", "add", "-d", "local", str(remote))
    dvc(repo, env, "push")
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "remote"], repo, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    dvc(clone, env, "pull")
    assert (clone / "models" / "conv.npz").read_bytes() == (
        repo / "models" / "conv.npz"
    ).read_bytes()
    assert dvc(clone, env, "status").stdout.strip().endswith("up to date.")


@pytest.mark.slow
def test_export_proves_the_onnx_files(reproduced):
    report = json.loads((reproduced / "reports" / "export.json").read_text())
    for kind in ("dense", "conv"):
        r = report[kind]
        assert r["predictions_agree"] == r["test_images"] and r["max_abs_logit_diff"] <= 1e-4
        data = (reproduced / "models" / f"{kind}.onnx").read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]


@pytest.mark.slow
def test_dvc_artifacts_get_fetches_a_registered_model(reproduced, env, tmp_path):
    """The registered model, fetched by name and tag from a git repository and a folder DVC
    remote, with no DVC Studio token."""
    repo = reproduced
    e = {k: v for k, v in env.items() if not k.startswith("DVC_STUDIO")}
    dvc(repo, e, "remote", "add", "-d", "-f", "registry", str(tmp_path / "registry"))
    dvc(repo, e, "push")
    run(["git", "add", "-A"], repo, e)
    run(["git", "commit", "-qm", "registry", "--allow-empty"], repo, e)
    for name in ("mnist-conv", "mnist-dense"):  # register v1.0.0 as GTO does: annotated tags
        message = f"Registering artifact {name} version v1.0.0"
        run(["git", "tag", "-a", f"{name}@v1.0.0", "-m", message], repo, e)
    out = tmp_path / "fetched.onnx"
    dvc(tmp_path, e, "artifacts", "get", str(repo), "mnist-conv", "--rev", "v1.0.0", "-o", str(out))
    assert out.read_bytes() == (repo / "models" / "conv.onnx").read_bytes()
    dvc(tmp_path, e, "artifacts", "get", str(repo), "mnist-dense", "-o", str(tmp_path / "d.onnx"))
    assert (tmp_path / "d.onnx").read_bytes() == (repo / "models" / "dense.onnx").read_bytes()


def test_bad_param_stops_stage_with_one_line(repo, env):
    params = repo / "params.yaml"
    original = params.read_text()
    models = repo / "models"
    before = (
        sorted((p.name, p.stat().st_mtime_ns) for p in models.iterdir()) if models.exists() else []
    )
    try:
        set_params(params, {"train_dense.lr": -1.0})
        result = run([BIN / "python", "-m", "stages", "train", "dense"], repo, env, check=False)
    finally:
        params.write_text(original)
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: train_dense.lr: OneCycle: max_lr must be in (0.0, inf], got -1.0"
    )
    assert "Traceback" not in result.stderr
    after = (
        sorted((p.name, p.stat().st_mtime_ns) for p in models.iterdir()) if models.exists() else []
    )
    assert after == before  # nothing written, not even a temporary file


def test_fetch_without_network_names_mnist_mirror(repo, env, tmp_path):
    e = dict(env, MNIST_MIRROR=str(tmp_path / "nowhere"))
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    result = run(
        [BIN / "python", "-m", "stages", "fetch"],
        tmp_path,
        e | {"PYTHONPATH": str(repo)},
        check=False,
    )
    assert result.returncode == 2
    assert "MNIST_MIRROR" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "raw").exists() or not any(
        (tmp_path / "data" / "raw").iterdir()
    )


@pytest.mark.slow
def test_the_server_serves_any_experiments_models(reproduced, wider, env, tmp_path):
    """``nn-mnist serve --repo``: an experiment's models, read from the DVC cache, answer beside
    the workspace's, named by experiment, commit and dvc.lock's MD5; one missing from the cache
    is refused in one line naming the pull that brings it."""
    import httpx
    from test_server import running

    repo = reproduced
    pixels = {"pixels": [0.0] * 300 + [1.0] * 100 + [0.0] * 384}
    with running(repo / "models", "--repo", repo, log=tmp_path / "server.log") as (url, _):
        listed = httpx.get(f"{url}/api/revisions", timeout=60).json()["revisions"]
        exp = next(r for r in listed if r["name"] == "wider")
        assert exp["kind"] == "experiment" and len(exp["rev"]) == 40
        head = run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
        assert any(r["kind"] == "commit" and r["rev"] == head for r in listed)
        parent = run(["git", "rev-parse", f"{exp['rev']}^"], repo, env).stdout.strip()
        assert exp["baseline"] == parent[:7]  # the commit it was run from
        lock = yaml.safe_load(run(["git", "show", f"{exp['rev']}:dvc.lock"], repo, env).stdout)
        md5 = {
            o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])
        }  # fmt: skip
        ours = httpx.post(f"{url}/api/predict", json=pixels).json()["models"]
        theirs = httpx.post(f"{url}/api/predict", params={"rev": "wider"}, json=pixels)
        assert theirs.status_code == 200, theirs.text
        theirs = theirs.json()["models"]
        assert [m["name"] for m in theirs] == ["conv@wider", "dense@wider"]
        for m in theirs:
            assert m["revision"] == exp and m["md5"] == md5[f"models/{m['file']}"]
        assert ours[1]["revision"] is None and ours[1]["md5"] != theirs[1]["md5"]  # new dense
        assert ours[0]["md5"] == theirs[0]["md5"]  # conv did not rerun
        a = httpx.post(f"{url}/api/explain", params={"model": "dense@wider"}, json=pixels)
        assert a.status_code == 200, a.text
        a = a.json()
        assert a["model"] == "dense@wider" and a["revision"]["name"] == "wider"
        assert a["layers"][1]["shape"] == [24]  # the experiment's architecture
        bad = httpx.post(f"{url}/api/predict", params={"rev": "nope"}, json=pixels)
        assert bad.status_code == 422 and "no experiment or commit named 'nope'" in bad.text
    # A copy of the repository without its DVC cache: the experiment's files are not there.
    bare = tmp_path / "bare"
    shutil.copytree(repo, bare, ignore=shutil.ignore_patterns("cache"))
    with running(bare / "models", "--repo", bare, log=tmp_path / "bare.log") as (url, _):
        r = httpx.post(f"{url}/api/predict", params={"rev": "wider"}, json=pixels, timeout=60)
        assert r.status_code == 422, r.text
        assert r.json() == {
            "error": "models/conv.npz of experiment wider ("
            f"{exp['rev'][:7]}) is not in the local DVC cache: run `dvc exp pull origin wider`"
        }


@pytest.mark.slow
def test_the_page_picks_an_experiment_and_looks_inside(reproduced, wider, tmp_path, mnist_folder):
    """In the browser: pick the experiment, draw, get its models' answers, and compare its conv
    model with the workspace's dense one in Look inside."""
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, draw
    from test_server import running

    from pipeline.idx import load_mnist_split

    images, _ = load_mnist_split(mnist_folder, "test")
    repo = reproduced
    with running(repo / "models", "--repo", repo, log=tmp_path / "server.log") as (url, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], timeout=60_000
            )
            try:
                page = browser.new_page(viewport={"width": 900, "height": 900})
                page.set_default_timeout(30_000)
                page.goto(url)
                page.wait_for_selector("#revisions:not([hidden])")
                page.select_option("#rev", "wider")
                draw(page, images[0])
                names = page.locator(".model").evaluate_all("els => els.map(e => e.dataset.model)")
                assert names == ["conv@wider", "dense@wider"]
                assert "experiment wider" in page.locator("#models").inner_text()
                page.click("#inside summary")
                page.wait_for_function(
                    "document.body.dataset.inside > 0 && !document.body.dataset.insideBusy"
                )
                assert page.locator("#inside-model").input_value() == "conv@wider"
                page.select_option("#inside-compare", "dense")
                page.wait_for_function(
                    "document.body.dataset.inside > 1 && !document.body.dataset.insideBusy"
                )
                shown = page.locator("#attributions figure[data-model]").evaluate_all(
                    "els => els.map(e => e.dataset.model)"
                )
                assert shown == ["conv@wider", "dense"]
            finally:
                browser.close()
