"""Pictures people would rather look at than read: loss curves and captioned image grids."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw


def line_plot(values: Sequence[float], path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot(range(len(values)), values, linewidth=1)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def image_grid(images: Sequence[Image.Image], labels: Sequence[str], columns: int, cell: int = 64) -> Image.Image:
    """A grid of images, each with a one-line label under it."""
    label_h = 12
    rows = max(1, -(-len(images) // columns))
    grid = Image.new("RGB", (columns * cell, rows * (cell + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (img, label) in enumerate(zip(images, labels)):
        x, y = (i % columns) * cell, (i // columns) * (cell + label_h)
        grid.paste(img.convert("RGB").resize((cell, cell), Image.Resampling.BICUBIC), (x, y))
        draw.text((x + 2, y + cell), label[: cell // 6], fill=(0, 0, 0))
    return grid
