"""Offline image sources of the check set and the object library scenes are composed from.

Three kinds of source, all available without a network:

* photographs bundled inside the scikit-image wheel (``skimage/data/*.png|jpg``). They are read
  straight from the package folder with PIL, never through ``skimage.data``'s loaders, so nothing
  can fall back to a pooch download; a file missing from the installed wheel is a clear error;
* the bundled ARR-COC sample scene (``arrcoc/assets/sample_scene.png``), whose objects sit at the
  boxes ``arrcoc/assets/make_sample.py`` draws them at (``SAMPLE_BOXES``, checked against the pixels
  by the tests);
* signs rendered here with PIL: words on a coloured plate.

``OBJECTS`` lists every object a question can be about: where its pixels come from (one crop box
per slot shape it may take in the grid), the questions that name it by what it is, and whether
the question asks to read. ``FILLERS`` are the clutter sources (textures, micrographs, astronomy)
placed in the cells no object holds.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

__all__ = ["SKIMAGE_OBJECT_FILES", "SKIMAGE_FILLER_FILES", "SAMPLE_BOXES", "SIGN_COLOURS", "SIGN_WORDS",
           "ObjectSpec", "OBJECTS", "FILLERS", "skimage_photo", "sample_scene", "render_sign", "object_crop",
           "skimage_data_dir"]

# Photographs of objects (file name in skimage/data -> what it shows).
SKIMAGE_OBJECT_FILES = {
    "chelsea.png": "a tabby cat's face (RGB)",
    "coffee.png": "a cup of espresso on a saucer with a spoon (RGB)",
    "rocket.jpg": "a rocket on its launch pad between towers, at dusk (RGB)",
    "astronaut.png": "astronaut Eileen Collins in an orange suit (RGB)",
    "camera.png": "a man with a camera on a tripod (greyscale)",
    "coins.png": "24 old coins on a dark background (greyscale)",
    "motorcycle_left.png": "a red motorcycle in a garage (RGB; left view of the stereo pair)",
    "horse.png": "a black horse silhouette (binary)",
    "page.png": "a scanned book page, 'Region-based segmentation' (greyscale)",
    "text.png": "handwritten equations on paper (greyscale)",
}
# Clutter: textures and non-object photographs (no question is ever about them).
SKIMAGE_FILLER_FILES = ("brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
                        "cell.png", "retina.jpg", "color.png", "chessboard_RGB.png", "microaneurysms.png",
                        "phantom.png", "logo.png", "clock_motion.png")

# Object boxes (x0, y0, x1, y1) in the 640x480 sample scene, as drawn by arrcoc/assets/make_sample.py:
# blue sign plate, stop-sign octagon (centre 560, 380, radius 42), house with roof, bar-chart panel,
# tree (crown + trunk), and the line of small print at (60, 440) in the 14-px default font.
SAMPLE_BOXES = {
    "blue_sign": (0, 250, 201, 316),
    "stop_sign": (518, 338, 603, 423),
    "house": (405, 95, 616, 301),
    "bar_chart": (440, 10, 631, 81),
    "tree": (110, 120, 206, 301),
    "text_line": (60, 440, 322, 457),
}

# Plate colour name -> (plate RGB, text RGB). Never blue or red: the sample scene's blue sign and the
# stop sign are asked about by colour / kind, and a second blue or red sign would make that ambiguous.
SIGN_COLOURS = {
    "green": ((20, 120, 60), (255, 255, 255)),
    "yellow": ((240, 200, 30), (20, 20, 20)),
    "orange": ((235, 120, 20), (255, 255, 255)),
    "purple": ((110, 40, 140), (255, 255, 255)),
    "white": ((240, 240, 240), (20, 20, 20)),
    "brown": ((110, 70, 30), (255, 255, 255)),
}
SIGN_WORDS = ("OPEN 24 HOURS", "PLATFORM 7", "HOTEL", "NO ENTRY", "PHARMACY", "CITY CENTRE", "BUS STOP",
              "SALE 50%", "MUSEUM", "CAFE", "TICKETS", "TAXI")

Shape = tuple  # (rows, cols) of grid cells a slot covers: (1, 1), (1, 2) wide or (2, 1) tall


class ObjectSpec(NamedTuple):
    """One askable object. source: "skimage:<file>", "sample:<key>" or "sign" (rendered; the plate
    colour and words are drawn per scene). crops: slot shape -> crop box in the source image (the
    box's aspect is close to the slot's, so the resized crop fills most of it). questions: name the
    object by what it is, never by where it is. reading: the question asks to read text."""

    key: str
    source: str
    crops: dict
    questions: tuple
    reading: bool = False


OBJECTS = (
    ObjectSpec("cat", "skimage:chelsea.png", {(1, 1): (75, 0, 375, 300), (1, 2): (0, 38, 451, 263)},
               ("What colour is the cat?", "What colour are the cat's eyes?", "Is the cat awake?")),
    ObjectSpec("coffee", "skimage:coffee.png", {(1, 1): (80, 0, 480, 400), (1, 2): (0, 50, 600, 350)},
               ("Is there milk in the coffee?", "What colour is the coffee cup?",
                "Is there a spoon next to the coffee cup?")),
    ObjectSpec("rocket", "skimage:rocket.jpg", {(2, 1): (213, 0, 427, 427), (1, 1): (107, 0, 534, 427)},
               ("Is the rocket on the launch pad?", "What colour is the rocket?",
                "How many towers stand around the rocket?")),
    ObjectSpec("astronaut", "skimage:astronaut.png", {(1, 1): (0, 0, 512, 512)},
               ("What is the astronaut wearing?", "What colour is the astronaut's suit?",
                "Is the astronaut smiling?")),
    ObjectSpec("photographer", "skimage:camera.png", {(1, 1): (0, 0, 512, 512)},
               ("What is the photographer looking through?", "What is the camera standing on?",
                "Is the man with the camera wearing a coat?")),
    ObjectSpec("coins", "skimage:coins.png", {(1, 1): (40, 0, 343, 303), (1, 2): (0, 56, 384, 248)},
               ("How many coins are there?", "Are the coins gold or silver?")),
    ObjectSpec("motorcycle", "skimage:motorcycle_left.png", {(1, 1): (100, 40, 741, 500), (1, 2): (0, 100, 741, 470)},
               ("What colour is the motorcycle?", "What brand is the motorcycle?")),
    ObjectSpec("horse", "skimage:horse.png", {(1, 1): (0, 0, 400, 328)},
               ("Which way is the horse facing?", "Is the horse standing or running?")),
    ObjectSpec("page", "skimage:page.png", {(1, 2): (0, 0, 384, 191)},
               ("What is the title of the printed page?", "What does the first sentence on the page say?"),
               reading=True),
    ObjectSpec("notes", "skimage:text.png", {(1, 2): (0, 0, 344, 172)},
               ("What is written in the handwritten notes?", "Which equation do the handwritten notes show?"),
               reading=True),
    ObjectSpec("blue_sign", "sample:blue_sign", {(1, 2): (0, 240, 201, 326)},  # the plate, a little sky and grass
               ("What does the blue sign say?", "Which exit number is on the blue sign?"), reading=True),
    ObjectSpec("stop_sign", "sample:stop_sign", {(1, 1): SAMPLE_BOXES["stop_sign"]},
               ("What does the stop sign say?", "What shape is the stop sign?")),
    ObjectSpec("house", "sample:house", {(1, 1): SAMPLE_BOXES["house"]},
               ("What colour is the roof of the house?", "How many windows does the house have?")),
    ObjectSpec("tree", "sample:tree", {(1, 1): (100, 112, 216, 250)},  # crown and trunk above the blue sign
               ("Does the tree have leaves?", "How tall is the tree?")),
    ObjectSpec("bar_chart", "sample:bar_chart", {(1, 2): SAMPLE_BOXES["bar_chart"]},
               ("Which bar of the bar chart is the tallest?", "How many bars does the chart have?")),
    ObjectSpec("sign", "sign", {(1, 2): (0, 0, 240, 112), (1, 1): (0, 0, 120, 112)},
               ("What does the {colour} sign say?", "What is written on the {colour} sign?"), reading=True),
)

FILLERS = tuple(f"skimage:{f}" for f in SKIMAGE_FILLER_FILES)


def skimage_data_dir() -> Path:
    """The data folder inside the installed scikit-image wheel (ImportError naming the extra if absent)."""
    try:
        import skimage
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the check set needs scikit-image (its bundled photographs): "
                          "pip install 'arrcoc[eval]' or pip install scikit-image") from e
    return Path(skimage.__file__).parent / "data"


@lru_cache(maxsize=None)
def skimage_photo(name: str):
    """A photograph bundled in the scikit-image wheel as an RGB PIL image (greyscale, binary and
    RGBA files are converted; RGBA is composited on white). Never downloads."""
    from PIL import Image

    if name not in SKIMAGE_OBJECT_FILES and name not in SKIMAGE_FILLER_FILES:
        raise ValueError(f"name must be one of the check set's scikit-image files "
                         f"{sorted(SKIMAGE_OBJECT_FILES) + sorted(SKIMAGE_FILLER_FILES)}, got {name!r}")
    path = skimage_data_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the installed scikit-image wheel; the check set only uses "
                                "files the wheel bundles (it never downloads)")
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
            canvas.alpha_composite(im)
            return canvas.convert("RGB")
        return im.convert("RGB")


@lru_cache(maxsize=None)
def sample_scene():
    """The bundled sample scene (640x480 RGB PIL image) read from the package's PNG."""
    from PIL import Image

    from arrcoc.assets.make_sample import SAMPLE_PATH

    with Image.open(SAMPLE_PATH) as im:
        return im.convert("RGB")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the small bitmap font
        return ImageFont.load_default()


def render_sign(colour: str, words: str, width: int, height: int):
    """Words on a coloured plate with a white (or dark) border, text centred, as far as it fits:
    an RGB PIL image of width x height. colour must be a key of SIGN_COLOURS."""
    from PIL import Image, ImageDraw

    if colour not in SIGN_COLOURS:
        raise ValueError(f"colour must be one of {sorted(SIGN_COLOURS)}, got {colour!r}")
    if not isinstance(words, str) or not words.strip():
        raise ValueError(f"words must be a non-empty string, got {words!r}")
    if width < 16 or height < 16:
        raise ValueError(f"a sign needs at least 16x16 pixels, got {width}x{height}")
    plate, ink = SIGN_COLOURS[colour]
    img = Image.new("RGB", (width, height), plate)
    d = ImageDraw.Draw(img)
    border = max(2, min(width, height) // 20)
    edge = (20, 20, 20) if colour in ("white", "yellow") else (255, 255, 255)
    d.rectangle([0, 0, width - 1, height - 1], outline=edge, width=border)
    lines = words.split() if width < 1.5 * height and len(words.split()) > 1 else [words]
    size = int(height * 0.8 / len(lines))
    while size > 6:  # the largest font size at which every line fits inside the border
        font = _font(size)
        boxes = [d.textbbox((0, 0), line, font=font) for line in lines]
        if max(b[2] - b[0] for b in boxes) <= width - 4 * border and \
                sum(b[3] - b[1] for b in boxes) * 1.25 <= height - 4 * border:
            break
        size -= 1
    font = _font(size)
    boxes = [d.textbbox((0, 0), line, font=font) for line in lines]
    step = (height - 2 * border) / len(lines)
    for k, (line, b) in enumerate(zip(lines, boxes)):
        x = (width - (b[2] - b[0])) / 2 - b[0]
        y = border + step * (k + 0.5) - (b[3] - b[1]) / 2 - b[1]
        d.text((x, y), line, fill=ink, font=font)
    return img


def object_crop(spec: ObjectSpec, shape: Shape, colour: str | None = None, words: str | None = None):
    """The object's pixels for a slot of the given shape, before resizing (an RGB PIL image)."""
    if shape not in spec.crops:
        raise ValueError(f"object {spec.key!r} has no crop for slot shape {shape}; it has {sorted(spec.crops)}")
    box = spec.crops[shape]
    if spec.source == "sign":
        if colour is None or words is None:
            raise ValueError("a rendered sign needs colour and words")
        return render_sign(colour, words, box[2] - box[0], box[3] - box[1])
    kind, _, name = spec.source.partition(":")
    img = skimage_photo(name) if kind == "skimage" else sample_scene()
    return img.crop(box)
