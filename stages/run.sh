#!/bin/sh
# Run a pipeline stage with the project's Python, however DVC was started:
# the active virtual environment, else ./.venv, else python3 on PATH.
if [ -n "$VIRTUAL_ENV" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    py="$VIRTUAL_ENV/bin/python"
elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
else
    py=python3
fi
stage=$1
shift
exec "$py" -m "stages.$stage" "$@"
