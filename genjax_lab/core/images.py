"""PNG grids of images and simple line plots (Pillow only)."""
import pathlib

import numpy as np
from PIL import Image


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


def save_grid(path: pathlib.Path, images: np.ndarray, rows: int | None = None, scale: int = 4) -> None:
    """Writes `image_grid(images, rows)` to `path`, enlarged `scale` times."""
    grid = Image.fromarray(image_grid(images, rows))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
