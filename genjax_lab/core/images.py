"""PNG grids of images and simple line plots (Pillow only)."""

import pathlib

import numpy as np
from PIL import Image, ImageDraw


def image_grid(images: np.ndarray, rows: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles `images` [N, H, W] or [N, H, W, 1] with values in [0, 1] into a uint8 grid."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(f"images must be [N, H, W] or [N, H, W, 1], got shape {images.shape}")
    n, h, w = images.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = image
    return (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8)


def save_grid(
    path: pathlib.Path, images: np.ndarray, rows: int | None = None, scale: int = 4
) -> None:
    """Writes `image_grid(images, rows)` to `path`, enlarged `scale` times."""
    grid = Image.fromarray(image_grid(images, rows))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


_COLOURS = ((0, 0, 200), (200, 0, 0), (0, 140, 0))
_COLOUR_NAMES = ("blue", "red", "green")


def plot_against_k(
    path: pathlib.Path,
    ks: list[int],
    series: dict[str, list[float]],
    title: str,
    x_label: str,
    reference: float | None = None,
    size: tuple[int, int] = (480, 300),
) -> None:
    """One coloured line per entry of `series` (up to three, values at `ks`), log x axis when K spans
    a factor > 4; `reference`, if given, a dashed grey level. The legend (names and colours) follows
    `title`."""
    if len(series) > len(_COLOURS):
        raise ValueError(f"plot_against_k draws at most {len(_COLOURS)} series, got {len(series)}")
    margin, (w, h) = 60, size
    image = Image.new("RGB", (w + 2 * margin, h + 2 * margin), "white")
    draw = ImageDraw.Draw(image)
    values = [v for vs in series.values() for v in vs] + (
        [reference] if reference is not None else []
    )
    lo, hi = min(values), max(values)
    lo, hi = lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9)
    xs = np.log(ks) if max(ks) > 4 * min(ks) else np.asarray(ks, np.float64)
    x0, x1 = xs.min(), xs.max() if xs.max() > xs.min() else xs.min() + 1.0
    px = lambda x: margin + (x - x0) / (x1 - x0) * w
    py = lambda v: margin + (hi - v) / (hi - lo) * h
    draw.rectangle([margin, margin, margin + w, margin + h], outline="black")
    if reference is not None:
        for x in np.linspace(margin, margin + w, 40)[::2]:
            draw.line([(x, py(reference)), (x + w / 40, py(reference))], fill=(150, 150, 150))
    for vs, colour in zip(series.values(), _COLOURS):
        points = [(px(x), py(v)) for x, v in zip(xs, vs)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    for k, x in zip(ks, xs):
        draw.text((px(x) - 6, margin + h + 6), str(k), fill="black")
    for v in (lo, hi):
        draw.text((4, py(v) - 6), f"{v:.4g}", fill="black")
    legend = "  ".join(f"{name} ({colour})" for name, colour in zip(series, _COLOUR_NAMES))
    draw.text((margin, 8), f"{title}: {legend}", fill="black")
    draw.text((margin + w // 2 - 30, margin + h + 24), x_label, fill="black")
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def plot_metrics(
    path: pathlib.Path, records: list[dict], width: int = 640, panel: int = 120
) -> None:
    """One panel per metric of `records` ({"step": s, name: value, ...}; "split" ignored)
    against step, min-max scaled with the value range printed."""
    names = sorted({k for r in records for k in r if k not in ("step", "split")})
    image = Image.new("RGB", (width, max(1, len(names)) * panel), "white")
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(names):
        points = [(r["step"], r[name]) for r in records if name in r and np.isfinite(r[name])]
        top = i * panel
        draw.rectangle([40, top + 18, width - 10, top + panel - 8], outline=(180, 180, 180))
        if not points:
            continue
        steps, values = np.array(points, np.float64).T
        lo, hi = values.min(), values.max()
        draw.text(
            (42, top + 4),
            f"{name}: {lo:.4g} .. {hi:.4g} (last {values[-1]:.4g}, step {int(steps[-1])})",
            fill="black",
        )
        if len(points) < 2:
            continue
        xs = 42 + (steps - steps.min()) / max(np.ptp(steps), 1e-12) * (width - 54)
        ys = top + panel - 10 - (values - lo) / max(hi - lo, 1e-12) * (panel - 30)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(31, 119, 180), width=2)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
