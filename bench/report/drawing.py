"""Draws the report's figures: in parallel, and each PNG only when what it plots has changed.

A figure task builds its figures with their point labels not yet placed
(``bench.report.labels.deferred_labels``); the figure's fingerprint (``fingerprint``: every
artist's data, text, colour, scale and tick, the figure's size) then keys its PNG in the cache, so
a new row that leaves a figure's points, lines and titles as they were reuses its PNG, and only a
changed figure pays for label placement and savefig. A task keeps a record of what its build gave
(captions, notes, PNGs) under a key of the rows the build plots (``bench.report.plots``): a report
whose rows for that build are those of the record copies its figures without building them.

The report runs these tasks in other processes (``bench.report.tasks``) while it builds its tables.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axis import Axis
from matplotlib.figure import Figure

from bench.atomic import atomic_write, atomic_write_text
from bench.report.labels import deferred_labels, place_pending_labels

#: What a figure build returns: (file name, the figure or None when the rows hold nothing for it,
#: caption), one per figure; and notes for the page.
Built = tuple[list[tuple[str, Figure | None, str]], list[str]]
#: What a task returns to the caller: ([(file name, caption)] drawn, [names not drawn], [notes]).
Drawn = tuple[list[tuple[str, str]], list[str], list[str]]

#: The getters whose values make a figure's fingerprint, where an artist has them (positions and
#: data in data coordinates, so the fingerprint needs no layout).
GETTERS = ("get_xydata", "get_offsets", "get_segments", "get_xy", "get_width", "get_height", "get_array",
           "get_text", "get_position", "get_rotation", "get_horizontalalignment", "get_fontsize",
           "get_color", "get_facecolor", "get_edgecolor", "get_marker", "get_markersize", "get_linestyle",
           "get_linewidth", "get_visible", "get_label", "get_gid", "get_xscale", "get_yscale", "get_xlim",
           "get_ylim", "get_xticks", "get_yticks", "get_zorder")
#: PNGs kept in the cache per figure file name, and records per build (the newest used).
KEPT_PER_FIGURE = 4
#: Hex digits of a cache key (a PNG's, a build record's).
KEY_LENGTH = 16


def _as_bytes(value) -> bytes:
    if isinstance(value, np.ndarray) or np.ma.isMaskedArray(value):
        array = np.ma.filled(value, np.nan) if np.ma.isMaskedArray(value) else value
        return repr((array.shape, str(array.dtype))).encode() + np.ascontiguousarray(array).tobytes()
    if isinstance(value, (list, tuple)):
        return b"[" + b",".join(_as_bytes(v) for v in value) + b"]"
    return repr(value).encode()


def _artists(artist: Artist) -> Iterator[Artist]:
    """``artist`` and everything it holds, as ``findobj`` gives them, less each axis' tick artists:
    an axis makes those on first asking (most of a figure's fingerprint time), and what they show
    is the axes' tick positions and the axis' tick labels (``_tick_labels``), in the fingerprint
    without them."""
    yield artist
    children = [artist.label, artist.offsetText] if isinstance(artist, Axis) else artist.get_children()
    for child in children:
        yield from _artists(child)


def _tick_labels(axis: Axis) -> list[str]:
    """The texts an axis' major and minor ticks will show, from its locators and formatters."""
    return [text for ticker in (axis.major, axis.minor)
            for text in ticker.formatter.format_ticks(list(ticker.locator()))]


def fingerprint(figure: Figure) -> str:
    """A hash of what ``figure`` shows: each artist's type and the ``GETTERS`` values it has, and
    each axis' tick labels. Equal figures (the same points, lines, texts, colours, scales,
    limits and ticks) give equal fingerprints; it is computed before the labels are placed."""
    digest = hashlib.sha1(_as_bytes(figure.get_size_inches()))
    for artist in _artists(figure):
        digest.update(type(artist).__name__.encode())
        for name in GETTERS:
            getter = getattr(artist, name, None)
            if getter is None:
                continue
            try:
                value = getter()
            except (TypeError, ValueError, AttributeError, RuntimeError):
                value = "?"  # a getter that needs arguments or a renderer: the same for equal figures
            digest.update(name.encode() + _as_bytes(value))
        if isinstance(artist, Axis):
            digest.update(_as_bytes(_tick_labels(artist)))
    return digest.hexdigest()


def save_figures(build: Callable[[], Built], out_dir: Path, png_cache: Path, salt: bytes, save: dict,
                 record: Path) -> Drawn:
    """Writes ``build``'s figures into ``out_dir``. Where ``record`` (what this build gave before,
    from the same rows) exists and its PNGs are still in ``png_cache``, from those, without
    building. Otherwise it runs ``build`` (labels deferred), and writes each figure from
    ``png_cache`` when a figure of the same fingerprint (and ``salt``: the drawing code and
    versions) was drawn before, else with its labels placed and saved (``save``: savefig's
    options) there first; then the record."""
    if record.exists():
        kept = json.loads(record.read_text())
        if all((png_cache / png).exists() for png in kept["pngs"]):
            for (name, _), png in zip(kept["drawn"], kept["pngs"]):
                os.utime(png_cache / png)  # the newest used are kept
                shutil.copyfile(png_cache / png, out_dir / name)
            os.utime(record)
            return [tuple(pair) for pair in kept["drawn"]], kept["missing"], kept["notes"]
    with deferred_labels():
        figures, notes = build()
    drawn, missing, pngs = [], [], []
    for name, figure, caption in figures:
        if figure is None:
            missing.append(name)
            continue
        key = hashlib.sha1(salt + fingerprint(figure).encode()).hexdigest()[:KEY_LENGTH]
        cached = png_cache / f"{Path(name).stem}_{key}.png"
        if cached.exists():
            os.utime(cached)  # the newest used are kept
        else:
            place_pending_labels(figure)
            atomic_write(cached, lambda partial, figure=figure: figure.savefig(partial, format="png", **save))
            _prune(png_cache, Path(name).stem)
        shutil.copyfile(cached, out_dir / name)
        drawn.append((name, caption))
        pngs.append(cached.name)
    atomic_write_text(record, json.dumps({"drawn": drawn, "pngs": pngs, "missing": missing, "notes": notes}))
    _prune(record.parent, record.stem[:-(KEY_LENGTH + 1)], ".json")
    return drawn, missing, notes


def _prune(cache: Path, stem: str, suffix: str = ".png") -> None:
    """Keeps the ``KEPT_PER_FIGURE`` newest used of ``stem``'s files in ``cache`` (``<stem>_<key>``)."""
    pattern = f"{stem}_" + "?" * KEY_LENGTH + suffix
    for old in sorted(cache.glob(pattern), key=lambda p: p.stat().st_mtime)[:-KEPT_PER_FIGURE]:
        old.unlink(missing_ok=True)
