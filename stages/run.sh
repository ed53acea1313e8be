#!/bin/sh
# Run a pipeline stage with the project's Python, however DVC was started: the active virtual
# environment, else the nearest .venv in this folder or above it (DVC runs temporary and queued
# experiments in .dvc/tmp/exps/... inside the project), else python3 on PATH.
py=python3
if [ -n "$VIRTUAL_ENV" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    py="$VIRTUAL_ENV/bin/python"
else
    dir=$(pwd)
    while :; do
        if [ -x "$dir/.venv/bin/python" ]; then
            py="$dir/.venv/bin/python"
            break
        fi
        [ "$dir" = / ] && break
        dir=$(dirname "$dir")
    done
fi
stage=$1
shift
exec "$py" -m stages "$stage" "$@"
