"""Optional PNG thumbnails of report charts for the Dagster UI, through kaleido and a Chromium.

Only when the configuration asks for them (``report_thumbnails: true``), kaleido is installed
(``pip install '.[thumbnails]'``) and a Chromium is on this machine; otherwise, or when kaleido
fails, there are simply no thumbnails. The report itself never needs a browser."""

from __future__ import annotations

import base64
import importlib.util
import shutil
import warnings
from pathlib import Path
from typing import Callable, Mapping

import plotly.graph_objects as go

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
SIZE = (480, 260)  # pixels: small enough for a metadata preview (tens of KB)


def chromium_available() -> bool:
    return any(Path(path).exists() for path in CHROMIUM_CANDIDATES) or shutil.which("chromium") is not None


def thumbnails(figures: Mapping[str, go.Figure], log: Callable[[str], None] = lambda message: None) -> dict[str, str]:
    """name -> base64 PNG of each figure; {} without kaleido or a Chromium."""
    if importlib.util.find_spec("kaleido") is None:
        log("report: no thumbnails (kaleido is not installed: pip install '.[thumbnails]')")
        return {}
    if not chromium_available():
        log("report: no thumbnails (no Chromium on this machine)")
        return {}
    import kaleido
    import plotly.io as pio

    # plotly.io.to_image always hands kaleido its options, and kaleido warns that a running server
    # ignores them: noise in every run's log. A process-wide filter (catch_warnings is not thread
    # safe), added here rather than at import so that it holds wherever the module was imported.
    warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server", category=UserWarning)
    images: dict[str, str] = {}
    try:
        kaleido.start_sync_server(mathjax=False)
    except Exception as error:  # noqa: BLE001 - thumbnails are optional
        log(f"report: no thumbnails (kaleido did not start: {error})")
        return {}
    try:
        for name, figure in figures.items():
            small = go.Figure(figure).update_layout(height=SIZE[1], width=SIZE[0], margin=dict(l=30, r=10, t=20, b=20))
            for attempt in (1, 2):  # a fresh kaleido fails now and then on its first image: retry once
                try:
                    png = pio.to_image(small, format="png", width=SIZE[0], height=SIZE[1], scale=1)
                except Exception as error:  # noqa: BLE001
                    if attempt == 2:
                        log(f"report: no thumbnail of {name} ({type(error).__name__}: {error})")
                    continue
                images[name] = base64.b64encode(png).decode("ascii")
                break
    finally:
        try:
            kaleido.stop_sync_server()
        except Exception:  # noqa: BLE001
            pass
    if images:
        log(f"report: {len(images)} thumbnails for the preview ({', '.join(images)})")
    return images
