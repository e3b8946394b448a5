"""Point labels of the trade-off figures, moved off each other, the points and the error bars.

adjustText (with the pyplot and scipy it imports, about a second) is imported only when a figure
with labels is drawn. A figure built with labels deferred (``deferred_labels``) keeps its labels
where they were put, so what it plots can be compared before the costly placement
(``bench.report.drawing``); ``place_pending_labels`` places them afterwards.
"""
from __future__ import annotations

import contextlib
import itertools

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

#: adjustText's iterations per panel and attempt: enough to part a dozen labels (make bench's panels
#: of 14 came out as far apart at 100 as at 300), bounded so that a figure of many panels stays
#: quick to draw.
LABEL_ITERATIONS = 100
#: adjustText's attempts per panel: the factors (x, y) by which a label's box is grown while labels
#: are parted. The first keeps a label clear of its marker; the tighter ones take over where it
#: leaves two labels overlapping (a crowded cluster, a cluster at the edge of the axes).
LABEL_CLEARANCES = ((1.3, 1.8), (1.1, 1.3), (1.02, 1.05))
#: The gid of the lines from moved labels back to their points (tests find them by this).
CONNECTOR_GID = "label-connectors"
#: The figure attribute holding labels whose placement was deferred.
PENDING = "_segbench_pending_labels"
_deferred = False


@contextlib.contextmanager
def deferred_labels():
    """Within it, ``place_labels`` leaves the labels where they are, for ``place_pending_labels``."""
    global _deferred
    before, _deferred = _deferred, True
    try:
        yield
    finally:
        _deferred = before


def label(ax, xs, ys, labels) -> list:
    """A label centred on each point, for ``place_labels`` to move: centred, labels of points that
    coincide start from one centre, which adjustText breaks up in both directions."""
    return [ax.text(x, y, text, fontsize="x-small", ha="center", va="center")
            for x, y, text in zip(xs, ys, labels)]


def overlapping(texts: list, renderer) -> bool:
    boxes = [text.get_window_extent(renderer) for text in texts]
    return any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def _error_bar_boxes(ax) -> list[Bbox]:
    """Each error bar of the panel as a box in data coordinates, for the labels to keep off."""
    segments = [segment for container in ax.containers if isinstance(container, ErrorbarContainer)
                for bars in container.lines[2] for segment in bars.get_segments()]
    return [Bbox(np.sort(segment, axis=0)) for segment in segments if np.isfinite(segment).all()]


def place_labels(figure: Figure, labelled: list[tuple[object, list]]) -> None:
    """Moves each panel's point labels off each other, the points and the error bars (adjustText),
    with a thin line back to a moved label's point (``_connect``); a panel whose labels still
    overlap is parted again with tighter clearances. The figure is laid out first and that layout then kept:
    adjustText works in display coordinates, and a later layout change would move the labels."""
    labelled = [(ax, texts) for ax, texts in labelled if texts]
    if not labelled:
        return
    if _deferred:
        setattr(figure, PENDING, labelled)
        return
    import adjustText  # noqa: PLC0415  (a second of imports, only when labels are placed)
    figure.get_layout_engine().execute(figure)  # the layout alone: adjustText draws the figure itself
    figure.set_layout_engine("none")
    renderer = adjustText.get_renderer(figure)
    shown = {ax: ax.get_visible() for ax in figure.axes}
    try:
        for ax, texts in labelled:
            # adjustText draws the figure on every call: only this panel, so a figure of n panels
            # costs n panel draws, not n figure draws.
            for other in figure.axes:
                other.set_visible(other is ax)
            _part(ax, texts, renderer)
    finally:
        for ax, visible in shown.items():
            ax.set_visible(visible)


def place_pending_labels(figure: Figure) -> None:
    """Places the labels a figure built under ``deferred_labels`` left where they were."""
    labelled = getattr(figure, PENDING, None)
    if labelled:
        delattr(figure, PENDING)
        place_labels(figure, labelled)


def _part(ax, texts: list, renderer) -> None:
    from adjustText import adjust_text  # noqa: PLC0415
    start = [text.get_position() for text in texts]
    bars = _error_bar_boxes(ax)
    for clearance in LABEL_CLEARANCES:
        # prevent_crossings off: its swaps of two labels' places let labels of unequal length overlap.
        adjust_text(texts, ax=ax, objects=bars or None, iter_lim=LABEL_ITERATIONS, expand=clearance,
                    prevent_crossings=False)
        if not overlapping(texts, renderer) or clearance == LABEL_CLEARANCES[-1]:
            break
        for text, position in zip(texts, start):
            text.set_position(position)
    _connect(ax, texts, start, renderer)


def _connect(ax, texts: list, points: list, renderer) -> None:
    """A thin line from each point to its label where the label no longer covers the point. One
    collection of straight lines under labels on a white ground (which hides the line's end; a
    thin margin, so that the ground of a label parted at the tightest clearance covers no
    neighbour), not adjustText's arrows: those are clipped to the label's outline by bisection at every draw,
    a fifth of a labelled figure's drawing time."""
    lines = [(point, text.get_position()) for text, point in zip(texts, points)
             if not text.get_window_extent(renderer).contains(*ax.transData.transform(point))]
    for text in texts:
        text.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.1})
    if lines:
        ax.add_collection(LineCollection(lines, colors="0.5", linewidths=0.5, zorder=texts[0].get_zorder() - 0.1,
                                         gid=CONNECTOR_GID), autolim=False)
