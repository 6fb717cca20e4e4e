"""Regenerate the bundled sample image ``sample_scene.png`` procedurally (PIL only, no downloads).

A 640x480 street-like scene: sky gradient, sun, a house, a tree, a road, a blue sign with the text
"EXIT 42 / AIRPORT", a red octagon with "STOP", a bar chart on a wall and a line of small print --
regions that differ in texture, salience and in relevance to typical questions.
Run: python -m arrcoc.assets.make_sample
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["make_sample_scene", "SAMPLE_PATH"]

SAMPLE_PATH = Path(__file__).with_name("sample_scene.png")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def make_sample_scene(width: int = 640, height: int = 480):
    """Return the sample scene as an RGB PIL image (deterministic)."""
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 64:
            raise ValueError(f"{name} must be an int >= 64 (pixels), got {v!r}")
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height))
    d = ImageDraw.Draw(img)
    for y in range(height // 2):  # sky gradient
        t = y / (height / 2)
        d.line([(0, y), (width, y)], fill=(int(120 + 80 * t), int(170 + 60 * t), 255))
    d.rectangle([0, height // 2, width, height], fill=(96, 140, 70))  # grass
    d.polygon([(250, height), (390, height), (340, height // 2), (300, height // 2)], fill=(70, 70, 75))  # road
    for y in range(height // 2 + 10, height, 40):
        d.rectangle([316, y, 324, y + 18], fill=(240, 240, 240))
    d.ellipse([40, 30, 110, 100], fill=(255, 220, 60))  # sun
    d.rectangle([420, 170, 600, 300], fill=(180, 90, 60))  # house
    d.polygon([(405, 170), (510, 95), (615, 170)], fill=(120, 40, 40))
    d.rectangle([490, 230, 530, 300], fill=(80, 50, 30))
    for x0 in (440, 550):
        d.rectangle([x0, 195, x0 + 35, 225], fill=(200, 230, 255), outline=(255, 255, 255), width=3)
    d.rectangle([150, 190, 162, 300], fill=(100, 70, 40))  # tree
    d.ellipse([110, 120, 205, 215], fill=(40, 110, 40))
    d.rectangle([20, 300, 30, 430], fill=(150, 150, 150))  # sign post + sign
    d.rectangle([0, 250, 200, 315], fill=(20, 70, 160), outline=(255, 255, 255), width=4)
    d.text((12, 256), "EXIT 42", fill=(255, 255, 255), font=_font(26))
    d.text((12, 286), "AIRPORT ->", fill=(255, 255, 255), font=_font(20))
    cx, cy, r = 560, 380, 42  # stop sign
    import math
    pts = [(cx + r * math.cos(math.pi / 8 + k * math.pi / 4), cy + r * math.sin(math.pi / 8 + k * math.pi / 4))
           for k in range(8)]
    d.polygon(pts, fill=(200, 20, 20), outline=(255, 255, 255))
    d.text((cx - 30, cy - 12), "STOP", fill=(255, 255, 255), font=_font(22))
    d.rectangle([440, 10, 630, 80], fill=(245, 245, 235), outline=(0, 0, 0))  # bar chart
    for k, h in enumerate((20, 45, 30, 55, 38)):
        d.rectangle([455 + 34 * k, 75 - h, 475 + 34 * k, 75], fill=(40 + 40 * k, 90, 200 - 30 * k))
    d.text((60, 440), "Speed limit 50 km/h - no parking 8am-6pm", fill=(20, 20, 20), font=_font(14))
    return img


if __name__ == "__main__":
    make_sample_scene().save(SAMPLE_PATH, optimize=True)
    print(f"wrote {SAMPLE_PATH} ({SAMPLE_PATH.stat().st_size} bytes)")
