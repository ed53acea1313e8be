"""The lab's routes: real DVC experiments of the served repository (``pipeline/lab.py``).

    GET    /api/lab                      the settings the Train panel starts from, the caps, and
                                         whether this browser holds the token
    GET    /api/experiments              every experiment of the workspace's commit: state,
                                         elapsed time, error line, params that differ, metrics,
                                         per-epoch curves (a running one's as its epochs end)
    POST   /api/experiments              {"name": optional, "params": {"train_dense.lr": 0.01}}:
                                         checked (422 naming the key), queued (429 over the bound)
    DELETE /api/experiments/NAME         cancel a queued or running experiment
    GET    /api/experiments/NAME/confusion   its test confusion matrices
    POST   /api/experiments/NAME/apply   ``dvc exp apply NAME`` (the workspace changes)
    POST   /api/experiments/NAME/push    ``dvc exp push origin NAME``

Every DVC command runs in the thread pool, one at a time, bounded in time; the list is read at
most every ``LIST_SECONDS`` (``dvc exp show`` costs a second of CPU that training needs).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import lab
from pipeline.errors import PipelineError
from pipeline.params import load_yaml
from pipeline.paths import MODEL_KINDS

LIST_SECONDS = 2.0
# What the Train panel offers, per model section (the rest stays as params.yaml has it).
TEACHING = {
    "common": ["fetch.dataset"],
    "train": [
        "epochs",
        "batch_size",
        "lr",
        "schedule",
        "optimizer",
        "dropout",
        "batch_norm",
        "augment_shift",
        "augment_flip",
        "hidden",
    ],
    "conv": ["channels", "kernel_size"],
}


class Lab:
    def __init__(self, repo: Path, caps: lab.Caps, error):
        self.repo, self.caps, self.error = Path(repo), caps, error
        self.dvc = lab.DvcCommand(repo)
        self.lock = threading.Lock()
        self._listed: tuple[float, list[dict]] | None = None
        self._done_curves: dict[str, dict] = {}  # rev -> curves (a done experiment's never change)

    def routes(self) -> list[Route]:
        return [
            Route("/api/lab", self.about),
            Route("/api/experiments", self.listing, methods=["GET"]),
            Route("/api/experiments", self.start, methods=["POST"]),
            Route("/api/experiments/{name}", self.cancel, methods=["DELETE"]),
            Route("/api/experiments/{name}/confusion", self.confusion),
            Route("/api/experiments/{name}/apply", self.apply, methods=["POST"]),
            Route("/api/experiments/{name}/push", self.push, methods=["POST"]),
        ]

    # --- DVC, one command at a time -----------------------------------------------------------

    def _list(self, fresh: bool = False) -> list[dict]:
        with self.lock:
            now = time.monotonic()
            if fresh or self._listed is None or now - self._listed[0] > LIST_SECONDS:
                self._listed = (now, lab.experiments(self.dvc))
            return self._listed[1]

    def _run(self, *args: str) -> str:
        with self.lock:
            self._listed = None
            return self.dvc(*args)

    async def call(self, fn, *args):
        try:
            return await run_in_threadpool(fn, *args)
        except PipelineError as e:
            raise self.error(422, str(e)) from None

    async def find(self, name: str, fresh: bool = False) -> dict:
        for exp in await self.call(self._list, fresh):
            if exp["name"] == name:
                return exp
        raise self.error(404, f"no experiment named {name!r}")

    # --- routes -------------------------------------------------------------------------------

    def params_text(self) -> str:
        """The workspace's ``params.yaml``, or a 422 naming it."""
        path = self.repo / "params.yaml"
        try:
            return path.read_text()
        except OSError as e:
            raise self.error(422, f"{path}: cannot read ({e.strerror})") from None

    async def about(self, request: Request):
        """``GET /api/lab``: whether this browser holds the token, the server's limits
        (``--jobs``, ``--max-queued``, ``--max-epochs``, ``--max-train-size``) and the settings the
        lab's form starts from (params.yaml)."""
        params = load_yaml(self.params_text())
        settings = {"fetch.dataset": params["fetch"]["dataset"]}
        for kind in MODEL_KINDS:
            keys = TEACHING["train"] + (TEACHING["conv"] if kind == "conv" else [])
            settings |= {f"train_{kind}.{k}": params[f"train_{kind}"][k] for k in keys}
            settings[f"preprocess.{kind}.train_size"] = params["preprocess"][kind]["train_size"]
        return JSONResponse(
            {
                "authorized": request.app.state.access.authorized(
                    {k.lower(): v for k, v in request.headers.items()}
                ),
                "caps": dataclasses.asdict(self.caps),
                "settings": settings,
            }
        )

    def _with_curves(self, exps: list[dict]) -> list[dict]:
        out = []
        for exp in exps:
            if exp["state"] == "done" and exp["rev"] in self._done_curves:
                curves = self._done_curves[exp["rev"]]
            else:
                curves = lab.curves(self.repo, exp)
                if exp["state"] == "done":
                    self._done_curves[exp["rev"]] = curves
            out.append(
                {k: v for k, v in exp.items() if k not in ("log", "root")} | {"curves": curves}
            )
        return out

    async def listing(self, request: Request):
        """``GET /api/experiments``: the workspace's DVC experiments, queued, running, failed or
        done, each with its params, metrics and training curves."""
        exps = await self.call(self._list)
        return JSONResponse({"experiments": await run_in_threadpool(self._with_curves, exps)})

    async def start(self, request: Request):
        """``POST /api/experiments``, body ``{"name": optional, "params": {"train_dense.lr": 0.1}}``
        (dotted params.yaml keys):
        checks the settings (422 naming the key), then queues ``dvc exp run -S ...`` (201 with the
        name; 429 when ``--max-queued`` are waiting)."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise self.error(400, "body is not valid JSON") from None
        if not isinstance(body, dict) or set(body) - {"name", "params"}:
            raise self.error(422, 'body must be {"name": optional, "params": {dotted key: value}}')
        name, settings = body.get("name") or None, body.get("params")
        text = self.params_text()
        await self.call(lab.check_settings, text, settings, self.caps)  # nothing starts if bad
        waiting = [
            e for e in await self.call(self._list, True) if e["state"] in ("queued", "running")
        ]
        if len(waiting) >= self.caps.max_queued:
            raise self.error(
                429, f"{len(waiting)} experiments queued or running, the most this server takes "
                f"(--max-queued {self.caps.max_queued}): wait or cancel one"
            )  # fmt: skip
        name = await self.call(self._queue, name, settings)
        return JSONResponse({"name": name}, status_code=201)

    def _queue(self, name, settings) -> str:
        with self.lock:
            self._listed = None
            return lab.queue(self.dvc, name, settings, self.caps.jobs)

    async def cancel(self, request: Request):
        """``DELETE /api/experiments/{name}``: removes a queued experiment or kills a running one
        (409 for any other)."""
        name = request.path_params["name"]
        exp = await self.find(name)
        if exp["state"] == "queued":
            try:
                await run_in_threadpool(self._run, "queue", "remove", name)
            except PipelineError as e:  # a worker took it between the listing and the removal
                exp = await self.find(name, fresh=True)
                if exp["state"] != "running":
                    raise self.error(422, str(e)) from None
        if exp["state"] == "running":
            await self.call(self._run, "queue", "kill", name)
        elif exp["state"] != "queued":
            raise self.error(409, f"{name} is {exp['state']}: only a queued or running one")
        return JSONResponse({"name": name, "cancelled": exp["state"]})

    async def confusion(self, request: Request):
        """``GET /api/experiments/{name}/confusion``: a finished experiment's confusion matrices,
        one per model."""
        exp = await self.find(request.path_params["name"])
        if exp["state"] != "done":
            raise self.error(409, f"{exp['name']} is {exp['state']}: no confusion matrices yet")
        return JSONResponse(await run_in_threadpool(lab.confusion, self.repo, exp["rev"]))

    async def apply(self, request: Request):
        """``POST /api/experiments/{name}/apply``: ``dvc exp apply``: its params and outputs go
        into the workspace, so the page serves its models."""
        exp = await self.find(request.path_params["name"])
        if exp["state"] != "done":
            raise self.error(409, f"{exp['name']} is {exp['state']}: only a finished one applies")
        await self.call(self._run, "exp", "apply", exp["name"])
        return JSONResponse({"name": exp["name"], "applied": True})

    async def push(self, request: Request):
        """``POST /api/experiments/{name}/push``: ``dvc exp push origin``: shares it through the git
        and DVC remotes."""
        exp = await self.find(request.path_params["name"])
        if exp["state"] != "done":
            raise self.error(409, f"{exp['name']} is {exp['state']}: only a finished one is pushed")
        await self.call(self._run, "exp", "push", "origin", exp["name"])
        return JSONResponse({"name": exp["name"], "pushed": "origin"})
