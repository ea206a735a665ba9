# SPDX-License-Identifier: MIT
"""Tables for machines and people: every table is written as CSV and as markdown, side by side.

The CSV keeps full precision; the markdown rounds to three decimals and writes a summary as
`0.912 ± 0.034` (mean ± sample std). Both files are written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.files import write_csv, write_text
from ppi_cli.reports.metrics import mean_std

__all__ = ["format_value", "format_mean_std", "format_interval", "markdown_table", "write_table"]

DIGITS = 3


def format_value(value: Any, digits: int = DIGITS) -> str:
    """A cell for people: floats rounded to `digits`, NaN as an em dash, everything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, np.integer)):  # counts print as 40, not 40.000
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "—"
    return f"{number:.{digits}f}"


def format_mean_std(values: Sequence[float], digits: int = DIGITS) -> str:
    """`0.912 ± 0.034`: the mean and sample std (ddof = 1) of `values`, as the paper writes AUC over folds.

    Example:
        >>> format_mean_std([0.9, 0.95, 0.88])
        '0.910 ± 0.036'
    """
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "—"
    if math.isnan(std):
        return f"{mean:.{digits}f} (one value)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_interval(low: float, high: float, digits: int = DIGITS) -> str:
    """`[0.871, 0.944]`, or an em dash when the interval could not be computed."""
    if math.isnan(low) or math.isnan(high):
        return "—"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(frame: Any, *, index: bool = False, digits: int = DIGITS) -> str:
    """Render a DataFrame as a GitHub-flavoured markdown table (numbers right-aligned).

    Args:
        frame: A pandas DataFrame.
        index: Include the index as the first column (named after the index, or blank).
        digits: Decimals for float cells.
    """
    import pandas as pd

    table = frame.reset_index() if index else frame
    if index and frame.index.name is None:
        table = table.rename(columns={"index": ""})
    headers = [str(c) for c in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in headers) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    for row in table.itertuples(index=False):
        cells = [format_value(v, digits).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(frame: Any, stem: str | Path, *, index: bool = False, title: str | None = None,
                note: str | None = None, digits: int = DIGITS) -> tuple[Path, Path]:
    """Write `frame` as `<stem>.csv` (full precision) and `<stem>.md` (rounded, optional title and note).

    Returns:
        The two paths, CSV first.

    Example:
        >>> write_table(folds, run / "folds")  # run/folds.csv and run/folds.md
    """
    stem = Path(stem)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    write_csv(csv_path, frame, index=index)
    parts = [f"# {title}\n" if title else "", markdown_table(frame, index=index, digits=digits),
             f"\n{note}\n" if note else ""]
    write_text(md_path, "\n".join(p for p in parts if p))
    return csv_path, md_path
