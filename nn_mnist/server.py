"""``nn-mnist serve``: the draw-a-digit web app, a Starlette app run by uvicorn.

Routes: ``App`` has one method per route, whose docstring is that route's contract (the site's
server API page, docs/server-api.md, shows them all, the lab's too).

Every error is a 4xx (or 503) with a one-line JSON body ``{"error": "..."}``. A body over the limit
gets 413 without being read whole (a declared Content-Length is refused before any byte is read);
a client that stops sending mid-body gets 408 after ``body_timeout`` seconds. Decoding runs in
the thread pool and inference in one thread of its own, never on the event loop; requests that
arrive together are classified in one forward pass per model. The models are reloaded when their
files change (checked every ``reload_interval`` seconds); no request names a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import queue
import socket
import threading
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nn_mnist.guard import Access, Guard
from nn_mnist.lab import Lab
from pipeline.errors import PipelineError
from pipeline.explaining import explain_image, parse_request
from pipeline.images import prepare_image
from pipeline.lab import Caps
from pipeline.revisions import RevisionModels
from pipeline.serving import ModelSet, answers, load_model_set, parse_pixels, signature

log = logging.getLogger("nn_mnist.server")

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 2 * 1024 * 1024  # bytes: a phone photo as JPEG fits; anything bigger is refused
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "application/octet-stream")


@dataclasses.dataclass(frozen=True)
class Settings:
    models: Path = Path("models")
    format: str = "npz"
    metrics: Path | None = Path("reports/metrics.json")
    max_body: int = MAX_BODY
    body_timeout: float = 10.0  # seconds a client may pause between two pieces of its body
    reload_interval: float = 1.0  # seconds between checks of the model files
    max_batch: int = 64  # images classified in one forward pass at most
    repo: Path | None = None  # a DVC repository whose experiments' and commits' models to serve
    access: Access | None = None  # the token, the Host names (nn_mnist/guard.py); None: no guard
    caps: Caps | None = None  # the lab's limits; None: no lab (it needs repo and access too)


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


LINGER_BYTES = 16 * 1024 * 1024  # of a refused body, read and dropped before the answer...
LINGER_SECONDS = 2.0  # ...for at most this long


async def discard(receive, budget: int, seconds: float) -> None:
    """Read and drop what the client is still sending (at most ``budget`` bytes, for at most
    ``seconds``), so that it reads our answer: closing a connection with unread data in it sends a
    reset, and a client still sending its body then loses the response (nginx's "lingering
    close")."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while budget > 0:
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body"):
            return
        budget -= len(message.get("body", b""))


class LimitBody:
    """ASGI middleware: refuse a body over ``max_body`` bytes (by its Content-Length before any
    of it is used, or as soon as the bytes received pass the limit), and a body that stalls. Of
    a refused body at most ``LINGER_BYTES`` are read and dropped, never kept."""

    def __init__(self, app, max_body: int, timeout: float):
        self.app, self.max_body, self.timeout = app, max_body, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await error(400, "Content-Length is not a number")(scope, receive, send)
            size = int(declared)
            if size > self.max_body:
                message = f"body of {size:,} bytes is over the {self.max_body:,} limit"
                if size <= LINGER_BYTES:
                    await discard(receive, size, LINGER_SECONDS)
                response = error(413, message)
                response.headers["connection"] = "close"
                return await response(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    if message.get("more_body"):
                        await discard(receive, LINGER_BYTES, LINGER_SECONDS)
                    raise BodyTooLarge
            return message

        await self.app(scope, limited, send)


class Inference:
    """One thread that classifies what requests submit: every image waiting when it is free goes
    into one forward pass per model (up to ``max_batch``), with the models current at that time."""

    def __init__(self, models, max_batch: int):
        self.models = models  # a callable: the ModelSet to use now
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.thread.start()

    async def classify(self, image: np.ndarray) -> tuple[list[dict], ModelSet]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.put((image, loop, future))
        return await future

    async def call(self, fn, *args):
        """``fn(*args)`` on this thread, between batches: an explanation runs the models' own
        layers (their caches), which must not interleave with a forward pass."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.put((functools.partial(fn, *args), loop, future))
        return await future

    def close(self, timeout: float = 10.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if callable(item[0]):
                self._call(*item)
                continue
            batch, calls = [item], []
            while len(batch) < self.max_batch:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # stop after this batch
                    break
                (calls if callable(item[0]) else batch).append(item)
            model_set = self.models()
            try:
                results = answers(model_set, np.stack([image for image, _, _ in batch]))
                outcomes = [(r, None) for r in results]
            except Exception as e:  # a model that fails: every request of the batch hears it
                log.exception("inference failed")
                outcomes = [(None, e)] * len(batch)
            for (_, loop, future), (result, exc) in zip(batch, outcomes, strict=True):
                loop.call_soon_threadsafe(_settle, future, (result, model_set), exc)
            for call in calls:
                self._call(*call)

    @staticmethod
    def _call(fn, loop, future) -> None:
        try:
            result, exc = fn(), None
        except Exception as e:  # the caller hears it (a PipelineError is a 4xx there)
            result, exc = None, e
        loop.call_soon_threadsafe(_settle, future, result, exc)


def _settle(future, result, exc):
    if future.cancelled():  # the client went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Models:
    """The current ModelSet, replaced when the files change; the last reload error, if any."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.current: ModelSet | None = None
        self.problem: str | None = "models not loaded yet"

    def _signature(self) -> tuple:
        s = self.settings
        return signature(s.models, s.format, s.metrics)

    def load(self) -> None:
        s = self.settings
        try:
            self.current = load_model_set(s.models, s.format, s.metrics)
            self.problem = None
            log.info(
                "serving %s",
                ", ".join(f"{m.name} ({m.classifier.sha256[:12]})" for m in self.current.models),
            )
        except PipelineError as e:
            self.problem = str(e)
            log.warning("models not (re)loaded: %s", e)

    async def watch(self) -> None:
        """Reload when the files' signature changes and then holds still for one interval (a
        file being written is not read half-way)."""
        seen = self.current.signature if self.current else None
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            now = await run_in_threadpool(self._signature)
            if now == seen:
                continue
            await asyncio.sleep(self.settings.reload_interval)
            if await run_in_threadpool(self._signature) != now:
                continue  # still changing: look again next time
            await run_in_threadpool(self.load)
            seen = now


class BadRequest(Exception):
    """A request the app refuses: its status and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


IMAGE_HELP = (
    "send a PNG or JPEG image (Content-Type image/png or image/jpeg, or a multipart form with "
    'a file field) or JSON {"pixels": [784 values]} (Content-Type application/json)'
)


class App:
    """The web app: the models being served, the inference thread, and one method per route.
    ``App(settings).starlette`` is the ASGI application."""

    def __init__(self, settings: Settings = Settings()):
        self.settings = settings
        self.models = Models(settings)
        self.inference: Inference | None = None
        self.revisions = None
        if settings.repo is not None:
            folder = Path(os.path.relpath(settings.models.resolve(), settings.repo.resolve()))
            self.revisions = RevisionModels(settings.repo, folder.as_posix(), settings.format)
        lab_routes = []
        if settings.repo is not None and settings.caps is not None and settings.access is not None:
            lab_routes = Lab(settings.repo, settings.caps, BadRequest).routes()
        self.starlette = Starlette(
            routes=[
                Route("/livez", self.livez),
                Route("/readyz", self.readyz),
                Route("/api/models", self.model_list),
                Route("/api/revisions", self.revision_list),
                Route("/api/predict", self.predict, methods=["POST"]),
                Route("/api/explain", self.explain, methods=["POST"]),
                *lab_routes,
                Route("/", self.page),
                Mount("/static", StaticFiles(directory=STATIC)),
            ],
            exception_handlers={
                HTTPException: self.http_error,
                BadRequest: self.bad_request,
                BodyTooLarge: self.too_large,
                BodyTimeout: self.timed_out,
                Exception: self.internal,
            },
            lifespan=self.lifespan,
        )
        self.starlette.state.access = settings.access
        self.starlette.add_middleware(
            LimitBody, max_body=settings.max_body, timeout=settings.body_timeout
        )
        if settings.access is not None:  # outermost: a refused request is not read at all
            self.starlette.add_middleware(Guard, access=settings.access)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        await run_in_threadpool(self.models.load)
        self.inference = Inference(lambda: self.models.current, self.settings.max_batch)
        watcher = asyncio.create_task(self.models.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await run_in_threadpool(self.inference.close)

    def model_set(self) -> ModelSet:
        if self.models.current is None:
            raise BadRequest(503, self.models.problem or "models not loaded")
        return self.models.current

    async def image(self, request: Request, model_set: ModelSet) -> np.ndarray:
        """The 28x28 image a request sends: JSON pixels used as they are, or a PNG or JPEG (the
        body, or the first file of a multipart form) prepared as the models' dataset was."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            body = await request.body()
            try:
                return parse_pixels(json.loads(body))
            except ValueError:  # JSONDecodeError, UnicodeDecodeError
                raise BadRequest(400, "body is not valid JSON") from None
            except PipelineError as e:
                raise BadRequest(422, str(e)) from None
        if kind == "multipart/form-data":
            body = await self.form_file(request)
        elif kind in IMAGE_TYPES or kind.startswith("image/"):
            body = await request.body()
        else:
            raise BadRequest(415, IMAGE_HELP)
        if not body:
            raise BadRequest(400, "empty body: send a PNG or JPEG image")
        try:
            return await run_in_threadpool(prepare_image, body, model_set.dataset)
        except PipelineError as e:
            raise BadRequest(422, f"image: {e}") from None

    @staticmethod
    async def form_file(request: Request) -> bytes:
        """The bytes of the one file in a multipart form (``curl -F file=@digit.png``)."""
        try:
            async with request.form(max_files=1, max_fields=8) as form:
                files = [v for v in form.values() if isinstance(v, UploadFile)]
                if not files:
                    raise BadRequest(422, "the form has no file: send one (-F file=@digit.png)")
                return await files[0].read()
        except HTTPException as e:  # Starlette's own refusal of a malformed or too-large form
            raise BadRequest(400, f"form: {e.detail}") from None

    async def page(self, request: Request):
        """``GET /``: the page (draw a digit, look inside, the lab)."""
        return FileResponse(STATIC / "index.html")

    async def livez(self, request: Request):
        """``GET /livez``: ``{"status": "alive"}`` while the process answers."""
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request):
        """``GET /readyz``: ``{"status": "ready", "models": [...], "reload_error": ...}`` once the
        models are loaded (503 before)."""
        models = self.model_set().info()
        return JSONResponse(
            {"status": "ready", "models": models, "reload_error": self.models.problem}
        )

    async def model_list(self, request: Request):
        """``GET /api/models``: the served models (name, file, runtime, dataset, class names, test
        accuracy, SHA-256 and MD5) and the last reload's error, if any."""
        models = self.model_set().info()
        return JSONResponse({"models": models, "reload_error": self.models.problem})

    async def revision_list(self, request: Request):
        """``GET /api/revisions``: the experiments and commits whose models can be asked for
        (``?rev=NAME`` on predict, ``model=conv@NAME`` on explain)."""
        if self.revisions is None:
            raise BadRequest(404, "no repository served: start with --repo DIR")
        try:
            found = await run_in_threadpool(self.revisions.revisions)
        except PipelineError as e:
            raise BadRequest(422, str(e)) from None
        return JSONResponse({"revisions": [r.info() for r in found]})

    async def revision_models(self, name: str) -> ModelSet:
        """The models of the experiment or commit ``name`` (those the workspace serves)."""
        if self.revisions is None:
            raise BadRequest(422, "rev: no repository served (start with --repo DIR)")
        stems = [m.name for m in self.model_set().models]
        try:
            return (await run_in_threadpool(self.revisions.model_set, name, stems))[1]
        except PipelineError as e:
            raise BadRequest(422, str(e)) from None

    async def predict(self, request: Request):
        """``POST /api/predict[?rev=NAME]``: every served model's class probabilities for one image
        (a PNG or JPEG body, a multipart form's file, or JSON ``{"pixels": [784 values]}``), and the
        28x28 image as the models saw it. ``rev``: the models of an experiment or commit."""
        rev = request.query_params.get("rev")
        if rev:  # another revision's models: one forward pass each, on the inference thread
            model_set = await self.revision_models(rev)
            image = await self.image(request, model_set)
            results = (await self.inference.call(answers, model_set, image[None]))[0]
        else:
            image = await self.image(request, self.model_set())
            results, model_set = await self.inference.classify(image)
        info = {m["name"]: m for m in model_set.info()}
        return JSONResponse(
            {
                "image": np.round(image, 4).tolist(),
                "models": [info[r["name"]] | r for r in results],
            }
        )

    async def explain(self, request: Request):
        """``POST /api/explain?model=conv&target=K&steps=32&unit=LAYER:INDEX``: what the model
        does inside for the image (``pipeline.explaining``)."""
        model_set = self.model_set()
        name = request.query_params.get("model", "conv")
        if "@" in name:  # conv@NAME: a model of an experiment or commit
            model_set = await self.revision_models(name.split("@", 1)[1])
        served = {m.name: m for m in model_set.models}
        if name not in served:
            raise BadRequest(
                422, f"model: no served model named {name!r} (served: {', '.join(served)})"
            )
        classifier = served[name].classifier
        try:
            wanted = parse_request(request.query_params, len(classifier.class_names))
        except PipelineError as e:
            raise BadRequest(422, str(e)) from None
        image = await self.image(request, model_set)
        try:
            answer = await self.inference.call(explain_image, classifier, image, wanted)
        except PipelineError as e:
            raise BadRequest(422, str(e)) from None
        model = served[name]
        return JSONResponse(
            answer
            | {"model": name, "accuracy": model.accuracy, "md5": model.classifier.md5}
            | {"revision": model.revision}
        )

    async def bad_request(self, request: Request, exc: BadRequest):
        return error(exc.status, str(exc))

    async def http_error(self, request: Request, exc: HTTPException):
        return error(exc.status_code, exc.detail)

    async def too_large(self, request: Request, exc: BodyTooLarge):
        response = error(413, f"body is over the {self.settings.max_body:,}-byte limit")
        response.headers["connection"] = "close"
        return response

    async def timed_out(self, request: Request, exc: BodyTimeout):
        response = error(408, f"no body data for {self.settings.body_timeout:g} s")
        response.headers["connection"] = "close"
        return response

    async def internal(self, request: Request, exc: Exception):
        log.exception("unexpected error", exc_info=exc)
        return error(500, "internal error (logged on the server)")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; PipelineError naming the address if it cannot be had
    (taken, not this machine's, not an address)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise PipelineError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None


def serve(settings: Settings, sock: socket.socket) -> None:
    """Run the app with uvicorn on ``sock`` until interrupted (Ctrl-C or SIGTERM: a clean
    shutdown)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    config = uvicorn.Config(
        App(settings).starlette,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
        server_header=False,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])
