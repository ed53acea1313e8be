"""The lab (``nn-mnist serve --repo``): real DVC experiments started, listed, cancelled and
watched through the API and in Chromium, the guard against other sites, and a server killed
mid-training. Runs on the tiny pipeline repository the end-to-end tests share; every server and
DVC queue worker started here is stopped here."""

import contextlib
import re
import time

import httpx
import pytest
import yaml
from conftest import BIN, run
from test_server import running

pytestmark = pytest.mark.slow


def token_of(log) -> str:
    """The token in the URL the server printed."""
    deadline = time.monotonic() + 10
    while not (match := re.search(r"\?token=(\S+)", log.read_text())):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return match.group(1)


def experiments(url) -> dict:
    r = httpx.get(f"{url}/api/experiments", timeout=60)
    assert r.status_code == 200, r.text
    return {e["name"]: e for e in r.json()["experiments"]}


def wait_for(url, name, states, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        exp = experiments(url).get(name)
        if (exp["state"] if exp else None) in states:
            return exp
        assert time.monotonic() < deadline, (name, exp)
        time.sleep(1)


@contextlib.contextmanager
def queue_stopped(repo, env):
    """Whatever DVC queue workers the block starts are stopped when it ends."""
    try:
        yield
    finally:
        run([BIN / "dvc", "queue", "stop", "--kill"], repo, env, check=False, timeout=120)


def workspace_state(repo, env) -> tuple[str, str]:
    git = run(["git", "status", "--porcelain"], repo, env).stdout
    dvc = run([BIN / "dvc", "status"], repo, env).stdout
    return git, dvc


def test_the_lab_refuses_other_sites_and_bad_settings_and_queues_with_a_bound(
    reproduced, e2e_env, tmp_path
):
    repo, env = reproduced, e2e_env
    log = tmp_path / "server.log"
    args = ("--repo", repo, "--max-queued", "1", "--max-epochs", "5")
    with queue_stopped(repo, env), running(repo / "models", *args, log=log) as (url, _):
        token = token_of(log)
        port = url.rsplit(":", 1)[1]
        auth = {"Authorization": f"token {token}"}
        # Long enough to be still queued or running when it is cancelled below (a tiny run
        # finished before the DELETE once).
        slow = {"train_dense.hidden": [512, 512], "preprocess.dense.train_size": 20000}
        body = {"name": "lab-a", "params": {"train_dense.epochs": 5} | slow}
        post = f"{url}/api/experiments"

        def refused(r, status, message):
            assert r.status_code == status, r.text
            assert r.json() == {"error": message} or message in r.json()["error"], r.text
            assert token not in r.text and token not in str(r.headers)

        # Without the token, with a foreign Origin, to another Host, with a wrong cookie.
        refused(httpx.post(post, json=body), 403, "needs the token the server printed")
        refused(
            httpx.post(post, json=body, headers=auth | {"Origin": "http://evil.example"}),
            403, "Origin 'http://evil.example' is not this server",
        )  # fmt: skip
        refused(
            httpx.get(f"{url}/api/experiments", headers={"Host": "evil.example"}),
            403, "Host 'evil.example' is not the address served",
        )  # fmt: skip
        cookie = {"Cookie": f"nn-mnist-token-{port}=wrong"}
        refused(httpx.post(post, json=body, headers=cookie), 403, "needs the token")
        refused(httpx.delete(f"{post}/lab-a"), 403, "needs the token")
        refused(httpx.get(f"{url}/?token=wrong"), 403, "token: not this server's token")
        # Reading stays open, and no answer to a request without the token holds it.
        for path in ("/", "/api/lab", "/api/experiments", "/api/models", "/static/lab.js"):
            r = httpx.get(url + path, timeout=60)
            assert r.status_code == 200 and token not in r.text and token not in str(r.headers)
        assert httpx.get(f"{url}/api/lab").json()["authorized"] is False
        # The printed URL: the token becomes an HttpOnly, same-site cookie, then the page.
        r = httpx.get(f"{url}/?token={token}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        set_cookie = r.headers["set-cookie"]
        assert set_cookie.startswith(f"nn-mnist-token-{port}={token};")
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        with_cookie = {"Cookie": f"nn-mnist-token-{port}={token}"}
        assert httpx.get(f"{url}/api/lab", headers=with_cookie).json()["authorized"] is True
        # Bad settings: one line naming the key, and nothing queued.
        before = set(experiments(url))
        for params, message in [
            ({"train_dense.lr": -1}, "train_dense.lr: OneCycle: max_lr must be in (0.0, inf]"),
            ({"train_dense.epochs": 6}, "train_dense.epochs: at most 5 here (--max-epochs)"),
            ({"train_dense.nope": 1}, "params.train_dense.nope: not a key of params.yaml"),
            ({"fetch.dataset": "cifar"}, "fetch.dataset: must be one of mnist, fashion_mnist"),
        ]:
            refused(httpx.post(post, json={"params": params}, headers=auth), 422, message)
        refused(
            httpx.post(post, json={"name": "a b", "params": {"train_dense.epochs": 2}},
                       headers=auth, timeout=60),
            422, "name: letters, digits",
        )  # fmt: skip
        assert set(experiments(url)) == before
        # Start one; the bound (1) refuses a second while it waits or runs; cancel it.
        r = httpx.post(post, json=body, headers=with_cookie, timeout=120)
        assert r.status_code == 201 and r.json() == {"name": "lab-a"}, r.text
        assert experiments(url)["lab-a"]["state"] in ("queued", "running")
        second = {"name": "lab-b", "params": {"train_dense.epochs": 3}}
        refused(httpx.post(post, json=second, headers=auth, timeout=60), 429, "--max-queued 1")
        r = httpx.delete(f"{post}/lab-a", headers=auth, timeout=120)
        assert r.status_code == 200 and r.json()["cancelled"] in ("queued", "running"), r.text
        deadline = time.monotonic() + 120
        while (exp := experiments(url).get("lab-a")) and exp["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, exp
            time.sleep(1)
        assert exp is None or exp["state"] == "failed", exp
        refused(httpx.delete(f"{post}/nothing", headers=auth), 404, "no experiment named")


def test_train_from_the_page_watch_it_survive_a_killed_server_and_draw_with_its_model(
    reproduced, e2e_env, tmp_path, mnist_folder
):
    """In Chromium: train a variant, see its first epoch on the curve while it runs; SIGKILL the
    server mid-training (the workspace's git and DVC status stay as they were); a restarted
    server lists it, it finishes, and its model answers a drawing beside the workspace's."""
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, draw

    from pipeline.idx import load_mnist_split

    repo, env = reproduced, e2e_env
    before = workspace_state(repo, env)
    images, _ = load_mnist_split(mnist_folder, "test")
    with queue_stopped(repo, env), sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], timeout=60_000
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1000})
            page.set_default_timeout(60_000)
            log = tmp_path / "first.log"
            with running(repo / "models", "--repo", repo, log=log) as (url, proc):
                page.goto(f"{url}/?token={token_of(log)}")
                assert page.url == f"{url}/"  # the token left the address bar
                page.click("#lab summary")
                page.wait_for_selector("#train:not([disabled])")
                page.fill('input[name="name"]', "lab-page")
                page.fill('input[name="train_dense.epochs"]', "8")
                page.fill('input[name="train_dense.hidden"]', "256, 256")
                page.fill('input[name="preprocess.dense.train_size"]', "12000")
                page.click("#train")
                page.wait_for_function(
                    "document.getElementById('lab-status').textContent === 'queued lab-page'"
                )
                # The first epoch's point while the experiment still runs.
                page.wait_for_function(
                    "(JSON.parse(document.getElementById('lab-curves').dataset.points || '{}')"
                    "['lab-page'] || {}).dense >= 1",
                    timeout=120_000,
                )
                row = page.locator('#experiments tr[data-name="lab-page"]')
                assert row.get_attribute("data-state") == "running"
                proc.kill()  # SIGKILL, mid-training
                proc.wait(10)
            assert workspace_state(repo, env) == before
            log = tmp_path / "second.log"
            with running(repo / "models", "--repo", repo, log=log) as (url, _):
                assert experiments(url)["lab-page"]["state"] in ("running", "done")
                page.goto(f"{url}/?token={token_of(log)}")
                page.click("#lab summary")
                page.wait_for_selector(
                    '#experiments tr[data-name="lab-page"][data-state="done"]', timeout=180_000
                )
                done = experiments(url)["lab-page"]
                assert len(done["curves"]["dense"]["val_accuracy"]) == 8
                assert done["metrics"]["dense"]["accuracy"] > 0.5
                robust = done["metrics"]["dense"]["robustness"]  # the traced digits, shown too
                cell = row.locator("td.dense-robust").inner_text()
                assert cell == f"{100 * robust:.2f}%", (cell, robust)
                assert workspace_state(repo, env) == before
                # Its models on the pad, beside the workspace's in Look inside.
                page.wait_for_function(
                    "[...document.getElementById('rev').options].some(o => o.value === 'lab-page')"
                )
                page.select_option("#rev", "lab-page")
                draw(page, images[0])
                names = page.locator(".model").evaluate_all("els => els.map(e => e.dataset.model)")
                assert names == ["conv@lab-page", "dense@lab-page"]
                page.click("#inside summary")
                page.select_option("#inside-model", "dense@lab-page")
                page.select_option("#inside-compare", "dense")
                page.wait_for_function(
                    "document.querySelectorAll('#attributions figure[data-model]').length === 2"
                    " && !document.body.dataset.insideBusy"
                )
                shown = page.locator("#attributions figure[data-model]").evaluate_all(
                    "els => els.map(e => e.dataset.model)"
                )
                assert shown == ["dense@lab-page", "dense"]
                page.screenshot(path=tmp_path / "lab.png", full_page=True)
        finally:
            browser.close()


def test_apply_and_push_a_finished_experiment(reproduced, e2e_env, tmp_path):
    """Push sends the experiment to the git remote 'origin' (a bare repository here); apply
    brings it into the workspace, which the test then puts back."""
    repo, env = reproduced, e2e_env
    listed = run([BIN / "dvc", "exp", "list", "--name-only"], repo, env).stdout.split()
    name = "lab-page"  # the page's experiment, when the test above ran; else one of our own
    if name not in listed:
        name = "lab-done"
        run([BIN / "dvc", "exp", "run", "-n", name, "-S", "train_dense.epochs=1"], repo, env)
        run(["git", "checkout", "--", "."], repo, env)
        run([BIN / "dvc", "checkout", "-q"], repo, env)
    before = workspace_state(repo, env)
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", origin], tmp_path, env)
    log = tmp_path / "server.log"
    try:
        with running(repo / "models", "--repo", repo, log=log) as (url, _):
            auth = {"Authorization": f"token {token_of(log)}"}
            exp = experiments(url)[name]
            assert exp["state"] == "done"
            r = httpx.post(f"{url}/api/experiments/{name}/push", headers=auth, timeout=120)
            assert r.status_code == 422 and "origin" in r.json()["error"], r.text
            run(["git", "remote", "add", "origin", origin], repo, env)
            r = httpx.post(f"{url}/api/experiments/{name}/push", headers=auth, timeout=120)
            assert r.status_code == 200, r.text
            refs = run(["git", "ls-remote", origin], tmp_path, env).stdout
            assert f"/{name}" in refs
            assert workspace_state(repo, env) == before  # pushing changes nothing here
            r = httpx.post(f"{url}/api/experiments/{name}/apply", headers=auth, timeout=120)
            assert r.status_code == 200, r.text
            params = yaml.safe_load((repo / "params.yaml").read_text())
            for key, value in exp["params"].items():  # the workspace holds its values now
                section, *rest = key.split(".")
                node = params[section]
                for part in rest:
                    node = node[part]
                assert node == value, key
            r = httpx.post(f"{url}/api/experiments/nothing/apply", headers=auth, timeout=60)
            assert r.status_code == 404
    finally:
        run(["git", "checkout", "--", "."], repo, env)
        run([BIN / "dvc", "checkout", "-q"], repo, env)
        run(["git", "remote", "remove", "origin"], repo, env, check=False)
    assert workspace_state(repo, env) == before
