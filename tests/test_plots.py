"""Each plotting function writes a PNG of the expected size that shows its data."""

import numpy as np
import pytest
from PIL import Image

from genjax_lab.core import plots


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _has(pixels: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.all(pixels == colour, axis=-1).any())


def test_image_grid_places_each_tile_inside_its_frame():
    images = np.arange(5 * 3 * 4, dtype=np.float32).reshape(5, 3, 4) / 60
    grid = plots.image_grid(images[..., None], columns=2, pad=1)
    assert grid.shape == (3 * (3 + 2), 2 * (4 + 2))  # 3 rows of 2, a 1-pixel frame each side
    tile = grid[1 * 5 + 1 : 1 * 5 + 4, 1 * 6 + 1 : 1 * 6 + 5]  # image 3: row 1, column 1
    np.testing.assert_array_equal(tile, (images[3] * 255).round().astype(np.uint8))
    assert (grid[:, 0] == 255).all() and (grid[-5:, 6:] == 255).all()  # frame, empty slot


def test_save_grid_blocks_labels_title_and_ink(tmp_path):
    ones = np.ones((3, 2, 2), np.float32)
    path = tmp_path / "sub" / "grid.png"
    plots.save_grid(
        path, [ones, ones[:1]], columns=3, scale=2, ink=True, labels=["ab", "c"], title="t"
    )
    pixels = _pixels(path)[..., 0]
    left, top, cell = 6 * 2 + 8, 24, 2 * 2 + 2  # label column, title band, 2x2 tile at 2x
    assert pixels.shape == (top + cell + 4 + cell, left + 3 * cell)
    assert (pixels[top + 1 : top + 5, left + 1 : left + 5] == 0).all()  # value 1 in ink: black
    second = top + cell + 4
    assert (pixels[second + 1 : second + 5, left + 1 : left + 5] == 0).all()
    assert (pixels[second:, left + cell :] == 255).all()  # the second block has one tile
    assert (pixels[:top, :] < 255).any() and (pixels[top:, :left] < 255).any()  # title, labels
    plots.save_grid(path, ones, rows=1, scale=1)  # one array: one block, no label column
    assert _pixels(path).shape[:2] == (2 + 2, 3 * (2 + 2))
    with pytest.raises(ValueError, match="labels"):
        plots.save_grid(path, [ones, ones], labels=["one"])


def test_plot_panels_draws_each_series_in_its_colour(tmp_path):
    x = np.array([1.0, 10.0, 100.0])
    red, blue = (200, 0, 0), (0, 0, 200)
    panels = [
        plots.Panel("a", [plots.Series("r", x, x / 100, err=x / 1000, color=red)], log_x=True),
        plots.Panel("b", [plots.Series("b", x, np.array([1.0, np.nan, 0.0]), color=blue)]),
        plots.Panel("zoom", [plots.Series("r", x, x, color=red)], y_range=(0.0, 5.0)),
    ]
    path = tmp_path / "panels.png"
    plots.plot_panels(path, panels, columns=2, size=(100, 80), margin=20)
    pixels = _pixels(path)
    assert pixels.shape[:2] == (2 * (80 + 40), 2 * (100 + 40))
    assert _has(pixels[:120, :140], red) and not _has(pixels[:120, :140], blue)
    assert _has(pixels[:120, 140:], blue)  # the NaN point is skipped, the rest drawn
    assert _has(pixels[120:, :140], red)
    with pytest.raises(ValueError, match="panels"):
        plots.plot_panels(path, [])


def test_plot_curves_and_metrics(tmp_path):
    path = tmp_path / "curves.png"
    plots.plot_curves(
        path, [1, 4, 16], {"BIC": [3.0, 2.0, 2.5], "AIC": [2.0, 1.0, 1.5]}, "t", "K", reference=0.0
    )
    pixels = _pixels(path)
    assert pixels.shape[:2] == (300 + 100, 480 + 100)
    assert _has(pixels, plots.PALETTE[0]) and _has(pixels, plots.PALETTE[1])
    # The dashed reference level 0 widens the y range: drawn inside the box, not on its floor.
    grey_rows = np.flatnonzero(np.all(pixels == (150, 150, 150), axis=-1).any(1))
    bottom = 50 // 2 + 10 + 300
    assert grey_rows.size and bottom - 20 < grey_rows.max() < bottom - 5
    records = [{"step": s, "split": "train", "loss": 1.0 / (s + 1), "acc": s / 4} for s in range(4)]
    records.append({"step": 5, "acc": float("nan")})
    plots.plot_metrics(path, records, size=(200, 40))
    pixels = _pixels(path)
    assert pixels.shape[:2] == (2 * (40 + 100), 200 + 100)  # one panel per metric
    assert _has(pixels[:140], plots.PALETTE[0]) and _has(pixels[140:], plots.PALETTE[0])


def test_plot_shaded_series_shades_where_the_mask_says(tmp_path):
    mask = np.zeros(50, bool)
    mask[10:20] = mask[40:] = True
    path = tmp_path / "series.png"
    plots.plot_shaded_series(path, np.zeros(50), mask, "t", scale=4, height=100)
    pixels = _pixels(path)
    margin, top = 30, 30 // 2 + 10
    assert pixels.shape[:2] == (100 + 2 * margin, 50 * 4 + 2 * margin)
    middle = pixels[top + 50, margin + 2 : margin + 50 * 4 : 4]  # one pixel inside each step
    shaded = np.all(middle == (255, 200, 200), axis=-1)
    np.testing.assert_array_equal(shaded, mask)
    assert _has(pixels[top + 100 - 2 : top + 100 + 1], plots.PALETTE[0])  # values 0: the floor
    with pytest.raises(ValueError, match="shaded"):
        plots.plot_shaded_series(path, np.zeros(5), mask, "t")


def test_plot_confusion_colours_diagonal_and_errors(tmp_path):
    confusion = np.array([[5, 2, 0], [0, 5, 0], [0, 0, 5]])
    path = tmp_path / "confusion.png"
    plots.plot_confusion(path, confusion, cell=20)
    pixels = _pixels(path)
    margin = 40
    assert pixels.shape[:2] == (margin + 3 * 20 + 10, margin + 3 * 20 + 10)
    centre = lambda i, j: tuple(pixels[margin + 20 * i + 3, margin + 20 * j + 3])
    assert all(centre(i, i) == (0, 0, 255) for i in range(3))  # full diagonal: deep blue
    assert centre(0, 1)[0] == 255 and 0 < centre(0, 1)[1] < 255  # an error: red, lighter
    assert centre(1, 0) == (255, 255, 255)  # no recordings: white
    with pytest.raises(ValueError, match="confusion"):
        plots.plot_confusion(path, np.zeros((2, 3)))
