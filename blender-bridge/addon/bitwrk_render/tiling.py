# Pure helpers of the BitWrk add-on (no bpy): the article id, splitting a frame into
# tiles by estimated cost, centre-first order, tile jobs. Testable with plain python3.

import hashlib
import json
import math
import os

# Fuel per tile the article allows (pixel-samples); see article.json.
_HERE = os.path.dirname(os.path.abspath(__file__))

# Target pixel-samples per tile for each cost class: small tiles spread over many
# sellers and show progress early; large tiles waste less on per-tile overhead.
COST_CLASSES = {
    "SMALL": 2_000_000,
    "MEDIUM": 10_000_000,
    "LARGE": 50_000_000,
}
TILES_MAX = 256
TILE_SIDE_MIN_PX = 16


def article_manifest(version):
    """The blender-cycles manifest for Blender `major.minor`, exactly as the bridge has it."""
    with open(os.path.join(_HERE, "article.json"), encoding="utf-8") as f:
        m = json.load(f)
    m["runtime"] = "native:blender-%s" % version
    return m


def canonical_json(obj):
    # The protocol's canonical JSON: sorted keys, no whitespace, UTF-8, integers only.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def article_id(version):
    """SHA256 of the canonical manifest JSON: the article id the exchange knows."""
    return hashlib.sha256(canonical_json(article_manifest(version))).hexdigest()


def fuel_per_tile(version):
    return article_manifest(version)["limits"]["fuel"]


def split(width, height, samples, cost_class, fuel_max, tiles_min=1):
    """Tiles (x0, y0, x1, y1), rows from the top, covering the frame, centre first.

    The number of tiles follows the estimated cost (pixel-samples) over the class's
    target, so that no tile exceeds the article's fuel; the grid is as square as the
    frame allows."""
    target = min(COST_CLASSES[cost_class], fuel_max)
    total = width * height * samples
    n = max(1, tiles_min, min(TILES_MAX, math.ceil(total / target)))
    n = min(n, TILES_MAX)
    cols = max(1, min(width // TILE_SIDE_MIN_PX or 1, round(math.sqrt(n * width / height)) or 1))
    rows = max(1, min(height // TILE_SIDE_MIN_PX or 1, math.ceil(n / cols)))
    # Tiles still over the fuel cap (tiny frames with huge sample counts) get finer.
    while (width // cols + 1) * (height // rows + 1) * samples > fuel_max and (cols < width or rows < height):
        if cols < width:
            cols += 1
        if rows < height:
            rows += 1
    tiles = []
    for j in range(rows):
        for i in range(cols):
            tiles.append((width * i // cols, height * j // rows, width * (i + 1) // cols, height * (j + 1) // rows))

    def dist(t):
        dx = t[0] + t[2] - width
        dy = t[1] + t[3] - height
        return dx * dx + dy * dy

    tiles.sort(key=dist)
    return tiles


def tile_job(frame, width, height, tile, samples, seed, denoise_data):
    x0, y0, x1, y1 = tile
    return {
        "frame": frame,
        "width": width,
        "height": height,
        "x0": x0,
        "y0": y0,
        "x1": x1,
        "y1": y1,
        "samples": samples,
        "seed": seed,
        "denoise_data": bool(denoise_data),
    }
