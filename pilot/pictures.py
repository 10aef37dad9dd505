"""Pictures of the pilot's data and driving: the frame overlay (``pilot.drive --video/--sheet``), and
``pilot.dataset show``'s contact sheet, label histograms and augmentation preview.

Pillow draws the frames, matplotlib (Agg, no display) the histograms. Text is white with a dark outline
on a dark translucent box, readable over sky, road and grass alike.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from pilot.runtime import STEER_DEADBAND

KEY_NAMES = ("forward", "back", "left", "right")


@cache
def font(size: int = 13) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def text_box(img: Any, xy: tuple[int, int], lines: list[str], size: int = 13) -> None:
    """``lines`` at ``xy`` of the RGB image ``img``: white, outlined, on a dark translucent box."""
    from PIL import Image, ImageDraw

    f = font(size)
    draw = ImageDraw.Draw(img)
    boxes = [draw.textbbox((0, 0), line, font=f, stroke_width=1) for line in lines]
    step = max(b[3] for b in boxes) + 2
    w = max(b[2] for b in boxes) + 8
    h = step * len(lines) + 4
    x, y = xy
    shade = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ImageDraw.Draw(shade).rectangle([x, y, x + w, y + h], fill=(0, 0, 0, 150))
    img.paste(Image.alpha_composite(img.convert("RGBA"), shade).convert("RGB"))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((x + 4, y + 2 + i * step), line, font=f, fill=(255, 255, 255), stroke_width=1,
                  stroke_fill=(0, 0, 0))


def steering_scale(steering: Any) -> float:
    """The bar's full scale for steering values like ``steering``: their largest magnitude, rounded up to
    0.05, at least twice the dead band (so the band stays visible) and at most 1."""
    top = float(np.max(np.abs(steering))) if np.size(steering) else 0.0
    return float(min(1.0, max(2 * STEER_DEADBAND, round(np.ceil(top / 0.05 - 1e-9) * 0.05, 2))))


def _steering_bar(draw: Any, cx: int, y: int, half: int, steering: float, full: float) -> None:
    """A bar from the centre to the steering (+ = left, drawn leftwards), ``full`` at its ends, the dead band
    shaded: inside it no key is held (grey), beyond it the left/right key is (yellow)."""
    band = int(round(half * STEER_DEADBAND / full))
    draw.rectangle([cx - half - 2, y - 8, cx + half + 2, y + 8], fill=(0, 0, 0))
    draw.rectangle([cx - band, y - 7, cx + band, y + 7], fill=(70, 70, 70))
    value = float(np.clip(steering, -full, full))
    tip = cx - int(round(half * value / full))
    held = abs(steering) > STEER_DEADBAND
    draw.rectangle([min(cx, tip), y - 5, max(cx, tip), y + 5], fill=(255, 210, 0) if held else (170, 170, 170))
    for x in (cx - band, cx + band):
        draw.line([x, y - 8, x, y + 8], fill=(255, 255, 255))
    draw.line([cx, y - 8, cx, y + 8], fill=(120, 120, 120))
    draw.rectangle([cx - half - 2, y - 8, cx + half + 2, y + 8], outline=(255, 255, 255))


def _keys(draw: Any, x: int, y: int, keys: Any, s: int = 13) -> None:
    """The four keys as arrow caps (up, left, down, right), lit when held."""
    spots = {"forward": (1, 0), "left": (0, 1), "back": (1, 1), "right": (2, 1)}
    arrows = {"forward": [(0.5, 0.2), (0.2, 0.75), (0.8, 0.75)], "back": [(0.5, 0.8), (0.2, 0.25), (0.8, 0.25)],
              "left": [(0.2, 0.5), (0.75, 0.2), (0.75, 0.8)], "right": [(0.8, 0.5), (0.25, 0.2), (0.25, 0.8)]}
    lit = {"forward": (40, 200, 60), "back": (230, 50, 40), "left": (255, 210, 0), "right": (255, 210, 0)}
    for name, held in zip(KEY_NAMES, keys, strict=True):
        col, row = spots[name]
        x0, y0 = x + col * (s + 2), y + row * (s + 2)
        draw.rectangle([x0, y0, x0 + s, y0 + s], fill=lit[name] if held else (25, 25, 25), outline=(255, 255, 255))
        draw.polygon([(x0 + px * s, y0 + py * s) for px, py in arrows[name]],
                     fill=(0, 0, 0) if held else (110, 110, 110))


def overlay(image: np.ndarray, steering: float, target: float, speed: float, keys: Any = None, *,
            full: float = 1.0, scale: int = 4, title: str | None = None) -> np.ndarray:
    """The pilot's view enlarged: steering and target vs measured speed as text, the steering bar (full
    scale ``full``, dead band marked) and the keys held (``keys``: forward, back, left, right)."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    img = Image.fromarray(np.ascontiguousarray(image)).resize((w * scale, h * scale), Image.NEAREST)
    W, H = img.size
    size = max(9, min(13, W // 30))
    lines = [f"steer {steering:+.2f}  target {target * 3.6:3.0f} km/h  speed {speed * 3.6:3.0f} km/h"]
    text_box(img, (2, 2), [title, *lines] if title else lines, size)
    draw = ImageDraw.Draw(img)
    s = max(7, min(13, H // 20))
    keys_w = 3 * (s + 2)
    if keys is not None:
        _keys(draw, W - keys_w - 4, H - 2 * (s + 2) - 4, [bool(k) for k in keys], s)
    half = max(20, (W - keys_w - 24) // 2 - 30)
    cx, y = 8 + half + 2, H - 14
    _steering_bar(draw, cx, y, half, steering, full)
    text_box(img, (cx - half - 2, y - 30), [f"left {full:.2f} | dead band {STEER_DEADBAND:.2f} | right"],
             max(8, size - 3))
    return np.asarray(img)


# -- pilot.dataset show ---------------------------------------------------------------------------------
def contact_sheet(frames: Any, path: str | os.PathLike, n: int = 24, columns: int = 6, scale: int = 3) -> Path:
    """``n`` frames spread over the dataset, each with its labels (steering bar, target speed) and the keys
    the driver held, in a grid."""
    from PIL import Image

    picks = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int))
    full = steering_scale(frames.steering)
    tiles = [overlay(frames.images[i], float(frames.steering[i]), float(frames.target_speed[i]),
                     float(frames.speed[i]), frames.keys[i] if frames.keys is not None else None, full=full,
                     scale=scale, title=f"#{i} {frames.track[i]}") for i in picks]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, optimize=True)
    return Path(path)


def histograms(frames: Any, path: str | os.PathLike) -> Path:
    """Steering and target-speed labels (and the measured speed), as histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    a.hist(frames.steering, bins=np.linspace(-1.025, 1.025, 42), color="tab:orange")  # a bin centred on 0
    for x in (-STEER_DEADBAND, STEER_DEADBAND):
        a.axvline(x, color="grey", linestyle="--", linewidth=1)
    a.set(title=f"steering label ({len(frames)} frames; dashed: dead band)", xlabel="steering (+ = left)",
          ylabel="frames")
    top = max(1.0, float(np.max(frames.target_speed)), float(np.max(frames.speed))) * 3.6
    bins = np.linspace(0, top, 41)
    b.hist(frames.target_speed * 3.6, bins=bins, alpha=0.7, label="target speed (label)", color="tab:blue")
    b.hist(frames.speed * 3.6, bins=bins, alpha=0.5, label="measured speed", color="tab:green")
    b.set(title="speeds", xlabel="km/h", ylabel="frames")
    b.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def augmentation_preview(frames: Any, path: str | os.PathLike, n: int = 4, variants: int = 5, scale: int = 3,
                         seed: int = 0) -> Path:
    """A row per frame: the frame, then ``variants`` draws of ``pilot.train.augment`` of it (what training
    batches look like)."""
    from PIL import Image

    from pilot.train import augment

    picks = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int))
    rng = np.random.default_rng(seed)
    rows = []
    for i in picks:
        original = frames.images[i]
        out = [original] + [(augment(np.repeat(original[None], 1, 0), rng)[0] * 255).round().astype(np.uint8)
                            for _ in range(variants)]
        tiles = []
        for k, tile in enumerate(out):
            img = Image.fromarray(tile).resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.NEAREST)
            text_box(img, (2, 2), [f"#{i} original" if k == 0 else f"augmented {k}"], 11)
            tiles.append(np.asarray(img))
        rows.append(np.concatenate(tiles, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, optimize=True)
    return Path(path)


def show(frames: Any, out: str | os.PathLike) -> dict[str, Any]:
    """The three pictures of a dataset in ``out``; returns their paths and a few figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [contact_sheet(frames, out / "contact_sheet.png"), histograms(frames, out / "histograms.png"),
             augmentation_preview(frames, out / "augmentation.png")]
    held = np.abs(frames.steering) > STEER_DEADBAND
    return {"frames": len(frames), "files": [str(f) for f in files],
            "steering_held": round(float(held.mean()), 3),
            "target_speed_mean_m_s": round(float(np.mean(frames.target_speed)), 2)}
