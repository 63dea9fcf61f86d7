"""Shared pieces of the benchmark scripts (run as `python bench/NAME.py`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SCENESQUEEZER_SHARED_DATA", REPO.parent / "shared" / "data"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("GLOG_minloglevel", "2")


def emit(text: str, markdown: str | None) -> int:
    """Print a finished markdown section and, when asked, write it (atomically) to a file."""
    from scenesqueezer_core.atomic import atomic_write_text

    print("\n" + text)
    if markdown:
        atomic_write_text(markdown, text)
    return 0


def number_or_na(value: float | None) -> str:
    """A metric for a table cell: three decimals, or "n/a" where nothing was localized."""
    return "n/a" if value is None else f"{value:.3f}"
