"""Images side by side, each under its label: the README's pictures of two runs.

python docs/side_by_side.py OUT.png "IKL seed 0" ikl/views.png "SDS seed 0" sds/views.png
"""

import sys

from PIL import Image, ImageDraw


def side_by_side(pairs: list[tuple[str, str]], out: str, scale: float = 0.5, height=24) -> None:
    """(label, image path) pairs as one PNG, left to right, each scaled by ``scale`` under
    its label."""
    images = [Image.open(path).convert("RGB") for _, path in pairs]
    images = [i.resize((round(i.width * scale), round(i.height * scale))) for i in images]
    width = sum(i.width for i in images) + 16 * (len(images) - 1)
    canvas = Image.new("RGB", (width, height + max(i.height for i in images)), "white")
    x = 0
    for (label, _), image in zip(pairs, images):
        canvas.paste(image, (x, height))
        ImageDraw.Draw(canvas).text((x + 14, 6), label, fill="black")
        x += image.width + 16
    canvas.save(out)


if __name__ == "__main__":
    out, rest = sys.argv[1], sys.argv[2:]
    side_by_side(list(zip(rest[::2], rest[1::2])), out)
