"""``nn-mnist serve``: check the arguments, load the models once and take the address (each
failure one line and exit status 2), then run the web app (``nn_mnist/server.py``) until Ctrl-C."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.serving import load_model_set


def run(args) -> int:
    try:
        return _run(args)
    except PipelineError as e:
        print(f"nn-mnist serve: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if not 0 < args.port < 65536:
        raise PipelineError(f"--port must be 1-65535, got {args.port}")
    if not args.body_timeout > 0:
        raise PipelineError(f"--body-timeout must be > 0, got {args.body_timeout}")
    if args.max_batch < 1:
        raise PipelineError(f"--max-batch must be at least 1, got {args.max_batch}")
    models, metrics = Path(args.models), Path(args.metrics)
    first = load_model_set(models, args.format, metrics)
    from nn_mnist.guard import Access, new_token
    from nn_mnist.server import Settings, listen, serve
    from pipeline.allocator import limit_arenas
    from pipeline.lab import Caps

    limit_arenas(2)  # the thread pool's threads share two malloc arenas: memory stays flat

    caps = Caps(args.max_epochs, args.max_train_size, args.max_queued, args.jobs)
    for name, value in dataclasses.asdict(caps).items():
        if value < 1:
            raise PipelineError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    sock = listen(args.host, args.port)
    port = sock.getsockname()[1]
    access = Access(new_token()).names(args.host, port)
    names = ", ".join(m.name for m in first.models)
    url = f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{port}/"
    print(f"serving {names} from {models}/ on {url}?token={access.token}", file=sys.stderr)
    print(
        "open that URL (it holds this start's token: training from the page needs it)",
        file=sys.stderr,
    )
    settings = Settings(
        models=models,
        format=args.format,
        metrics=metrics,
        body_timeout=args.body_timeout,
        max_batch=args.max_batch,
        repo=None if args.repo == "" else Path(args.repo),
        access=access,
        caps=caps,
    )
    with sock:
        serve(settings, sock)
    return 0
