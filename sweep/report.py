"""A sweep's results as one table (pandas): CSV, Markdown sorted by the target metric, a figure."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from sweep.metrics import flatten
from sweep.spec import Sweep


def table(sweep: Sweep, rows: list[dict]) -> pd.DataFrame:
    """One row per point: experiment, swept params, status, every metric, seconds, host, error.
    Points with the metric come first, best first; failed points last, in sweep order."""
    records = []
    for row in rows:
        record = {"experiment": row["name"]}
        record |= {key: row["params"].get(key) for key in sweep.swept}
        record["status"] = row["status"]
        record |= flatten(row.get("metrics") or {})
        record |= {k: row.get(k) for k in ("seconds", "host", "error")}
        # Where a point's time went (seconds), and what its pull brought into the host's cache.
        timing = row.get("timing") or {}
        record |= {f"{k}_s": timing.get(k) for k in ("clone", "fetch", "run", "push")}
        fetched = row.get("fetched_bytes")
        record["fetched_MB"] = None if fetched is None else round(fetched / 1e6, 1)
        records.append(record)
    df = pd.DataFrame.from_records(records)
    if sweep.metric not in df:
        df[sweep.metric] = float("nan")
    df["_order"] = range(len(df))
    df = df.sort_values(
        [sweep.metric, "_order"], ascending=[sweep.goal == "min", True], na_position="last"
    )
    return df.drop(columns="_order").reset_index(drop=True)


def best(sweep: Sweep, df: pd.DataFrame) -> pd.Series | None:
    done = df[df[sweep.metric].notna()]
    return None if done.empty else done.iloc[0]


def markdown(sweep: Sweep, df: pd.DataFrame) -> str:
    """The table sorted as :func:`table` sorts it; beside the target metric, its model's test
    and validation accuracy, so a winner on one can be checked on the other."""
    model = sweep.metric.split(".")[0]
    beside = [c for c in (f"{model}.accuracy", f"{model}.val_accuracy") if c != sweep.metric]
    columns = ["experiment", *sweep.swept, sweep.metric, *beside, "status"]
    columns += ["seconds", "run_s", "fetch_s", "fetched_MB", "error"]
    shown = df[[c for c in columns if c in df]].copy()
    shown["error"] = shown["error"].fillna("")
    title = f"# Sweep `{sweep.name}`: {sweep.metric} ({sweep.goal}imize), best first\n\n"
    return title + shown.to_markdown(index=False, floatfmt="g") + "\n"


def figure_png(sweep: Sweep, df: pd.DataFrame) -> bytes:
    """The target metric against each swept parameter, one panel each (log x where the values
    span more than a decade)."""
    done = df[df[sweep.metric].notna()]
    keys = sweep.swept
    fig = Figure(figsize=(4 * len(keys), 3.5), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes[0], keys):
        x = done[key]
        numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
        if not numeric:  # lists, strings, booleans: one position per distinct value
            order = sorted({str(v) for v in x})
            ax.set_xticks(range(len(order)), order, rotation=30)
            x = pd.Series([order.index(str(v)) for v in x], index=x.index)
        ax.scatter(x, done[sweep.metric], alpha=0.6, label="points")
        means = done[sweep.metric].groupby(x).mean()
        if len(means) < len(done):  # repeated values (other axes, seeds): their mean too
            ax.plot(means.index, means.values, "o-", color="C1", label="mean")
            ax.legend(fontsize="small")
        if numeric and len(x) and x.min() > 0 and x.max() / x.min() >= 10:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: no crowded labels
        elif numeric:  # a few round ticks (whole numbers on an integer axis)
            ax.xaxis.set_major_locator(
                MaxNLocator(nbins=4, integer=pd.api.types.is_integer_dtype(x))
            )
        if numeric and key in sweep.grid and len(means) <= 12:  # a grid axis: tick its values
            ax.set_xticks(means.index, [f"{v:g}" for v in means.index])
            ax.minorticks_off()
        ax.set_xlabel(key)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"sweep {sweep.name}: {len(done)} of {len(df)} points")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def write(sweep: Sweep, df: pd.DataFrame, folder: Path) -> list[Path]:
    """``<folder>/<name>.csv``, ``.md`` and ``.png``, each written whole (temp file, rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {
        folder / f"{sweep.name}.csv": df.to_csv(index=False, lineterminator="\n").encode(),
        folder / f"{sweep.name}.md": markdown(sweep, df).encode(),
        folder / f"{sweep.name}.png": figure_png(sweep, df),
    }
    for path, data in outputs.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return list(outputs)
