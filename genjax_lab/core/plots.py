"""Every PNG the project draws (Pillow only): image grids, panels of curves, a confusion matrix.

Each function takes arrays and a path; nothing here knows a model or a data set. The line
figures (`plot_panels` and its shorthands `plot_curves`, `plot_metrics`, `plot_shaded_series`)
share one axes helper, `_draw_panel`.
"""

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

Colour = tuple[int, int, int]
PALETTE: tuple[Colour, ...] = (
    (0, 0, 200),
    (200, 0, 0),
    (0, 140, 0),
    (230, 120, 0),
    (130, 0, 160),
    (0, 150, 150),
)
_GREY = (150, 150, 150)
_SHADE = (255, 200, 200)
# Pillow's default bitmap font: about 6 pixels a character, 11 a line.
_CHAR, _LINE = 6, 12
# Markers at each point while the points stay apart; a long curve (a training log) is a line.
_MAX_MARKERS = 40


def _save(image: Image.Image, path: pathlib.Path) -> None:
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


# --------------------------------------------------------------------------------- grids


def image_grid(
    images: np.ndarray, rows: int | None = None, columns: int | None = None, pad: int = 1
) -> np.ndarray:
    """Tiles `images` [N, H, W], [N, H, W, 1] (grey) or [N, H, W, 3] (colour) with values in
    [0, 1] into a uint8 grid, [rows H', columns W'] or [.., .., 3] (white = 1), `columns` a row
    or else `rows` rows (default near-square), each tile framed by `pad` white pixels."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(
            f"images must be [N, H, W], [N, H, W, 1] or [N, H, W, 3], got shape {images.shape}"
        )
    n, h, w = images.shape[:3]
    if columns is None:
        columns = int(np.ceil(n / (rows or int(np.ceil(np.sqrt(n))))))
    rows = int(np.ceil(n / columns))
    cell_h, cell_w = h + 2 * pad, w + 2 * pad
    grid = np.ones((rows * cell_h, columns * cell_w, *images.shape[3:]), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * cell_h + pad : r * cell_h + pad + h, c * cell_w + pad : c * cell_w + pad + w] = (
            image
        )
    return (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8)


def save_grid(
    path: pathlib.Path,
    images: np.ndarray | list[np.ndarray],
    rows: int | None = None,
    scale: int = 4,
    *,
    columns: int | None = None,
    pad: int = 1,
    ink: bool = False,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    gap: int = 4,
) -> None:
    """Writes `images` (values in [0, 1]) as a grid, each pixel `scale` x `scale`, tiles framed
    by `pad` output pixels. A list of arrays draws blocks, each starting a new row of tiles,
    `gap` pixels apart and named on the left by `labels`; `ink` draws 1 black on white (digits,
    topic weights); `title` goes on top."""
    blocks = list(images) if isinstance(images, (list, tuple)) else [images]
    if labels is not None and len(labels) != len(blocks):
        raise ValueError(f"labels: {len(labels)} names for {len(blocks)} blocks of images")
    grids = []
    for block in blocks:
        block = np.asarray(block, np.float32)
        block = (1.0 - block if ink else block).repeat(scale, axis=1).repeat(scale, axis=2)
        grids.append(image_grid(block, rows, columns, pad))
    left = _CHAR * max(map(len, labels)) + 8 if labels else 0
    top = 2 * _LINE if title else 0
    width = left + max(g.shape[1] for g in grids)
    height = top + sum(g.shape[0] for g in grids) + gap * (len(grids) - 1)
    mode = "RGB" if any(g.ndim == 3 for g in grids) else "L"
    image = Image.new(mode, (width, height), (255,) * len(mode))
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((4, 4), title, fill=0)
    for i, grid in enumerate(grids):
        image.paste(Image.fromarray(grid).convert(mode), (left, top))
        if labels:
            draw.text((4, top + grid.shape[0] // 2 - _LINE // 2), labels[i], fill=0)
        top += grid.shape[0] + gap
    _save(image, path)


# ------------------------------------------------------------------------------- panels


@dataclasses.dataclass
class Series:
    """One curve: y against x, optional error bars of half-width `err`; `color` None takes the
    palette colour of the series' place in its panel."""

    label: str
    x: np.ndarray
    y: np.ndarray
    err: np.ndarray | None = None
    color: Colour | None = None


@dataclasses.dataclass
class Panel:
    """One set of axes. Ranges default to the data's (y with a 5% margin); values outside a
    given range are drawn on the box's edge (a zoomed panel). `x_ticks` default to the ends of
    the x range; `reference` is a dashed grey level; `shade` lists x intervals shaded red."""

    title: str
    series: list[Series]
    x_label: str = ""
    y_label: str = ""
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    log_x: bool = False
    x_ticks: Sequence[float] | None = None
    reference: float | None = None
    shade: Sequence[tuple[float, float]] = ()


def _finite(s: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, y = np.asarray(s.x, np.float64), np.asarray(s.y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    err = None if s.err is None else np.asarray(s.err, np.float64)[keep]
    return x[keep], y[keep], err


def _ranges(panel: Panel) -> tuple[tuple[float, float], tuple[float, float]]:
    data = [_finite(s) for s in panel.series]
    xs = np.concatenate([x for x, _, _ in data] + [np.zeros(0)])
    ys = [y for _, y, _ in data] + [y + e for _, y, e in data if e is not None]
    ys += [y - e for _, y, e in data if e is not None]
    reference = np.nan if panel.reference is None else panel.reference
    ys = np.concatenate(ys + [np.asarray([reference])])
    ys = ys[np.isfinite(ys)]
    x0, x1 = panel.x_range or ((xs.min(), xs.max()) if xs.size else (0.0, 1.0))
    if panel.y_range is not None:
        y0, y1 = panel.y_range
    elif ys.size:
        lo, hi = ys.min(), ys.max()
        y0, y1 = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    else:
        y0, y1 = 0.0, 1.0
    # A flat range gets a unit width so that the scaling below stays finite.
    return (x0, x1 if x1 > x0 else x0 + 1), (y0, y1 if y1 > y0 else y0 + 1)


def _draw_panel(
    draw: ImageDraw.ImageDraw, panel: Panel, left: int, top: int, width: int, height: int
) -> None:
    """Title, axes box, tick labels, shaded intervals, reference level, curves with error bars
    and markers, legend in the curves' colours; log_x spaces x by log10."""
    (x0, x1), (y0, y1) = _ranges(panel)
    fx = np.log10 if panel.log_x else np.asarray
    (u0, u1) = fx(np.asarray([x0, x1], np.float64))
    px = lambda v: left + (np.clip(fx(v), u0, u1) - u0) / (u1 - u0) * width
    py = lambda v: top + height - (np.clip(v, y0, y1) - y0) / (y1 - y0) * height
    for a, b in panel.shade:
        draw.rectangle([px(a), top, px(b), top + height], fill=_SHADE)
    draw.rectangle([left, top, left + width, top + height], outline="black")
    draw.text((left, top - 16), panel.title, fill="black")
    for v in panel.x_ticks if panel.x_ticks is not None else (x0, x1):
        label = f"{v:.4g}"
        x = min(max(px(v) - _CHAR * len(label) / 2, left), left + width - _CHAR * len(label))
        draw.text((x, top + height + 4), label, fill="black")
    draw.text(
        (left + width / 2 - _CHAR * len(panel.x_label) / 2, top + height + 16),
        panel.x_label,
        fill="black",
    )
    for v, y in ((y1, top - 4), (y0, top + height - 8)):
        label = f"{v:.3g}"
        draw.text((left - _CHAR * len(label) - 4, y), label, fill="black")
    if panel.y_label:
        draw.text((left + 4, top + 4), f"y: {panel.y_label}", fill="black")
    if panel.reference is not None:
        y = py(panel.reference)
        for x in np.arange(left, left + width, 12):
            draw.line([(x, y), (min(x + 6, left + width), y)], fill=_GREY)
    for k, s in enumerate(panel.series):
        color = s.color or PALETTE[k % len(PALETTE)]
        xs, ys, err = _finite(s)
        points = [(px(a), py(b)) for a, b in zip(xs, ys)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        if err is not None:
            for (a, b), e in zip(points, err):
                half = e / (y1 - y0) * height
                draw.line([(a, b - half), (a, b + half)], fill=color, width=1)
        if len(points) <= _MAX_MARKERS:
            for a, b in points:
                draw.ellipse([a - 2, b - 2, a + 2, b + 2], fill=color)
        label_x = left + width - _CHAR * len(s.label) - 6
        draw.text((label_x, top + 6 + _LINE * k), s.label, fill=color)


def plot_panels(
    path: pathlib.Path,
    panels: Sequence[Panel],
    columns: int = 3,
    size: tuple[int, int] = (300, 200),
    margin: int = 50,
) -> None:
    """`panels` as one PNG, `columns` a row, each axes box `size` with `margin` around it."""
    if not panels:
        raise ValueError("panels: nothing to draw")
    (width, height), columns = size, min(columns, len(panels))
    rows = -(-len(panels) // columns)
    cell_w, cell_h = width + 2 * margin, height + 2 * margin
    image = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(image)
    for k, panel in enumerate(panels):
        r, c = divmod(k, columns)
        _draw_panel(draw, panel, c * cell_w + margin, r * cell_h + margin // 2 + 10, width, height)
    _save(image, path)


def plot_curves(
    path: pathlib.Path,
    x: Sequence[float],
    curves: dict[str, Sequence[float]],
    title: str,
    x_label: str,
    reference: float | None = None,
    size: tuple[int, int] = (480, 300),
) -> None:
    """One panel of the named `curves` sampled at `x` (a sweep over K), every x labelled; log x
    when x spans more than a factor 4; `reference` a dashed grey level."""
    x = np.asarray(x, np.float64)
    panel = Panel(
        title,
        [Series(name, x, np.asarray(ys, np.float64)) for name, ys in curves.items()],
        x_label,
        log_x=bool(x.min() > 0 and x.max() > 4 * x.min()),
        x_ticks=x.tolist(),
        reference=reference,
    )
    plot_panels(path, [panel], size=size)


def plot_metrics(
    path: pathlib.Path, records: list[dict], size: tuple[int, int] = (540, 80)
) -> None:
    """One panel per metric of `records` ({"step": s, name: value, ...}; "split" ignored)
    against step, titled with the last value."""
    names = sorted({k for r in records for k in r if k not in ("step", "split")})
    panels = []
    for name in names:
        points = np.asarray([(r["step"], r[name]) for r in records if name in r], np.float64)
        points = points.reshape(-1, 2)
        points = points[np.isfinite(points).all(1)]
        title = f"{name} (last {points[-1, 1]:.4g})" if len(points) else name
        panels.append(Panel(title, [Series("", points[:, 0], points[:, 1])], "step"))
    plot_panels(path, panels or [Panel("no metrics", [])], columns=1, size=size)


def plot_shaded_series(
    path: pathlib.Path,
    values: np.ndarray,
    shaded: np.ndarray,
    title: str,
    x_label: str = "step",
    y_range: tuple[float, float] = (0.0, 1.0),
    scale: int = 3,
    height: int = 220,
) -> None:
    """`values` [T] against step (`scale` pixels a step), the steps where `shaded` [T] is true
    shaded red (a hidden state's true stretches)."""
    values, shaded = np.asarray(values, np.float64), np.asarray(shaded, bool)
    if shaded.shape != values.shape:
        raise ValueError(f"shaded has shape {shaded.shape}, values {values.shape}")
    # Runs of true steps [start, stop) from the rises and falls of the padded mask.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], shaded.astype(np.int8), [0]])))
    steps = np.arange(len(values)) + 0.5  # each step drawn at the middle of its slot
    panel = Panel(
        title,
        [Series("", steps, values)],
        x_label,
        x_range=(0.0, float(len(values))),
        y_range=y_range,
        shade=[(float(a), float(b)) for a, b in edges.reshape(-1, 2)],
    )
    plot_panels(path, [panel], size=(max(len(values) * scale, 120), height), margin=30)


# ------------------------------------------------------------------------------ matrices


def plot_confusion(
    path: pathlib.Path,
    confusion: np.ndarray,
    title: str = "true (rows) vs predicted (columns)",
    cell: int = 36,
) -> None:
    """Counts [C, C], rows the true class, columns the predicted; diagonal cells blue, the rest
    red, darker for more, counts written in."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be square [C, C], got shape {confusion.shape}")
    c, margin = confusion.shape[0], 40
    image = Image.new("RGB", (margin + c * cell + 10, margin + c * cell + 10), "white")
    draw = ImageDraw.Draw(image)
    top = max(float(confusion.max()), 1.0)
    for i in range(c):
        draw.text((margin - 16, margin + i * cell + cell // 2 - 5), str(i), fill="black")
        draw.text((margin + i * cell + cell // 2 - 3, margin - 14), str(i), fill="black")
        for j in range(c):
            shade = int(255 * (1.0 - confusion[i, j] / top))
            box = [margin + j * cell, margin + i * cell, margin + (j + 1) * cell]
            box.append(margin + (i + 1) * cell)
            fill = (shade, shade, 255) if i == j else (255, shade, shade)
            draw.rectangle(box, fill=fill, outline="gray")
            if confusion[i, j]:
                text_fill = "black" if shade > 120 else "white"
                draw.text((box[0] + 8, box[1] + 12), f"{confusion[i, j]:g}", fill=text_fill)
    draw.text((4, 4), title, fill="black")
    _save(image, path)
