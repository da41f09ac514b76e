# BitWrk distributed rendering: a render engine that packs the scene, splits the frame
# into tiles, buys the tiles from sellers on the BitWrk market through the local host's
# proxy, and stitches them into the render result as they arrive. Each tile is rendered
# by Cycles on a seller with the scene's samples and seed, so the stitched frame equals
# a local Cycles render of it (adaptive sampling and denoising off).
#
# Install: Preferences > Add-ons > Install... the zip of this folder (or copy the folder
# into scripts/addons). Headless: blender -b scene.blend --addons bitwrk_render -E BITWRK -f 1

bl_info = {
    "name": "BitWrk distributed rendering",
    "author": "bitwrk-rs",
    "version": (1, 0, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Render > Render Engine: BitWrk",
    "description": "Render frames as tiles bought on the BitWrk market (Cycles on sellers)",
    "category": "Render",
}

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import bpy

from . import client, tiling

ENGINE_ID = "BITWRK"
ATTEMPTS_MAX = 3
# How often the render loop looks at Blender's cancel flag while tiles are in flight.
CANCEL_POLL_S = 0.2
PACK_TIMEOUT_S = 600


class BitwrkError(Exception):
    pass


class BitwrkSettings(bpy.types.PropertyGroup):
    proxy_url: bpy.props.StringProperty(
        name="Host URL",
        description="The local BitWrk host (its buying proxy and UI)",
        default="http://127.0.0.1:8081",
    )
    max_price_sat: bpy.props.IntProperty(
        name="Max price per tile (sat)",
        description="Highest price to pay for one tile; 0 lets the host decide",
        default=0,
        min=0,
    )
    parallel_tiles: bpy.props.IntProperty(
        name="Parallel tiles",
        description="Tiles bought at the same time",
        default=4,
        min=1,
        max=64,
    )
    tiles_min: bpy.props.IntProperty(
        name="At least N tiles",
        description="Split even a cheap frame into at least this many tiles (to spread it over sellers)",
        default=1,
        min=1,
        max=tiling.TILES_MAX,
    )
    cost_class: bpy.props.EnumProperty(
        name="Tile cost",
        description="Size of tiles by estimated cost (pixels x samples)",
        items=[
            ("SMALL", "Small", "About 2 M pixel-samples per tile: many tiles, early progress"),
            ("MEDIUM", "Medium", "About 10 M pixel-samples per tile"),
            ("LARGE", "Large", "About 50 M pixel-samples per tile: least overhead"),
        ],
        default="MEDIUM",
    )


class BITWRK_OT_open_ui(bpy.types.Operator):
    bl_idname = "bitwrk.open_ui"
    bl_label = "Open BitWrk host"
    bl_description = "Open the local BitWrk host's web UI"

    def execute(self, context):
        bpy.ops.wm.url_open(url=context.scene.bitwrk.proxy_url)
        return {"FINISHED"}


class BITWRK_PT_settings(bpy.types.Panel):
    bl_label = "BitWrk"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    COMPAT_ENGINES = {ENGINE_ID}

    @classmethod
    def poll(cls, context):
        return context.engine in cls.COMPAT_ENGINES

    def draw(self, context):
        s = context.scene.bitwrk
        col = self.layout.column()
        col.prop(s, "proxy_url")
        col.prop(s, "max_price_sat")
        col.prop(s, "parallel_tiles")
        col.prop(s, "cost_class")
        col.prop(s, "tiles_min")
        col.operator("bitwrk.open_ui", icon="URL")
        col.label(text="Article %s" % tiling.article_id(blender_version())[:16])


def blender_version():
    return "%d.%d" % tuple(bpy.app.version[:2])


def has_oidn():
    try:
        import _cycles

        return bool(getattr(_cycles, "with_openimagedenoise", False))
    except ImportError:
        return False


def pack_scene(scene, workdir):
    """The packed .blend sellers get: written from memory (unsaved edits included),
    then made self-contained by pack.py in a separate Blender."""
    src = os.path.join(workdir, "source.blend")
    out = os.path.join(workdir, "packed.blend")
    bpy.data.libraries.write(src, {scene}, path_remap="ABSOLUTE", fake_user=True)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pack.py")
    args = json.dumps({"out": out, "scene": scene.name})
    cmd = [
        bpy.app.binary_path, "-b", "--factory-startup", "--disable-autoexec", "-noaudio", src,
        "--python-exit-code", "1", "--python", script, "--", args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=PACK_TIMEOUT_S, env=env)
    text = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0 or not os.path.exists(out):
        raise BitwrkError("packing the scene failed: " + text[-600:])
    for line in text.splitlines():
        if line.startswith("BITWRK-PACK-NOTES "):
            for note in json.loads(line[len("BITWRK-PACK-NOTES "):]):
                print("BitWrk: " + note)
    with open(out, "rb") as f:
        return f.read()


class BitwrkRenderEngine(bpy.types.RenderEngine):
    bl_idname = ENGINE_ID
    bl_label = "BitWrk distributed rendering"
    bl_use_preview = False
    bl_use_postprocess = True
    bl_use_shading_nodes_custom = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Tiles of the frame being rendered: Blender calls render() once per view
        # layer, and every tile already holds all layers.
        self._tiles = None

    def render(self, depsgraph):
        try:
            self._render(depsgraph)
        except BitwrkError as e:
            print("BITWRK ERROR: %s" % e, file=sys.stderr)
            self.report({"ERROR"}, "BitWrk: %s" % e)
            # Marks the render as failed (Blender >= 2.93), so `blender -b -f` exits non-zero.
            if hasattr(self, "error_set"):
                self.error_set("BitWrk: %s" % e)

    def _render(self, depsgraph):
        scene = bpy.data.scenes[depsgraph.scene.name]
        layer = depsgraph.view_layer.name
        r = scene.render
        width = r.resolution_x * r.resolution_percentage // 100
        height = r.resolution_y * r.resolution_percentage // 100
        if r.use_border:
            raise BitwrkError("render regions are not supported: turn off Output > Render Region")
        if scene.cycles.use_denoising:
            if not has_oidn():
                raise BitwrkError(
                    "this Blender has no OpenImageDenoise, so the stitched frame cannot be denoised: "
                    "turn off Render > Denoise (or use a Blender build with OpenImageDenoise)"
                )
            raise BitwrkError(
                "denoising the stitched frame is not available yet: turn off Render > Denoise "
                "and denoise in the compositor with the Denoising Data passes"
            )
        if self._tiles is not None:
            for tile, data in self._tiles:
                self._show(tile, data, width, height, layer)
            return
        self._tiles = self._buy_frame(scene, width, height, layer)

    def _show(self, tile, data, width, height, layer):
        x0, y0, x1, y1 = tile
        fd, path = tempfile.mkstemp(suffix=".exr", prefix="bitwrk-tile-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # Blender's result counts rows from the bottom.
            result = self.begin_result(x0, height - y1, x1 - x0, y1 - y0, layer=layer)
            result.load_from_file(path)
            self.end_result(result)
        finally:
            os.remove(path)

    def _buy_frame(self, scene, width, height, layer):
        s = scene.bitwrk
        version = blender_version()
        article = tiling.article_id(version)
        samples = scene.cycles.samples
        seed = scene.cycles.seed
        frame = scene.frame_current
        tiles = tiling.split(width, height, samples, s.cost_class, tiling.fuel_per_tile(version), s.tiles_min)
        self.update_stats("", "BitWrk: packing the scene")
        workdir = tempfile.mkdtemp(prefix="bitwrk-")
        try:
            scene_bytes = pack_scene(scene, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print("BitWrk: frame %d, %dx%d, %d samples, %d tiles, article %s, scene %d bytes"
              % (frame, width, height, samples, len(tiles), article, len(scene_bytes)))
        done = []
        attempts = {t: 0 for t in tiles}
        started = time.monotonic()
        cancel = client.Cancel()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=s.parallel_tiles, thread_name_prefix="bitwrk")
        try:
            def submit(t):
                attempts[t] += 1
                job = tiling.tile_job(frame, width, height, t, samples, seed, False)
                return pool.submit(client.buy_tile, s.proxy_url, article, scene_bytes, job, s.max_price_sat, cancel)

            pending = {submit(t): t for t in tiles}
            self.update_stats("", "BitWrk: 0/%d tiles" % len(tiles))
            while pending:
                if self.test_break():
                    raise BitwrkError("cancelled")
                finished, _ = concurrent.futures.wait(
                    pending, timeout=CANCEL_POLL_S, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for fut in finished:
                    t = pending.pop(fut)
                    try:
                        data = fut.result()
                    except client.BuyError as e:
                        if e.final or attempts[t] >= ATTEMPTS_MAX:
                            raise BitwrkError("tile %s failed after %d attempt(s): %s" % (t, attempts[t], e))
                        print("BitWrk: tile %s failed (%s), trying again" % (t, e))
                        pending[submit(t)] = t
                        continue
                    self._show(t, data, width, height, layer)
                    done.append((t, data))
                    self.update_progress(len(done) / len(tiles))
                    self.update_stats("", "BitWrk: %d/%d tiles" % (len(done), len(tiles)))
        finally:
            # Cancelled, or a tile failed for good: drop what has not started and close
            # the buys in flight, so the host withdraws their bids instead of buying tiles
            # nobody will see (a trade already matched runs to its deadline and refunds
            # or pays per the exchange's rules). After success nothing is in flight.
            cancel.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
        print("BitWrk: %d tiles in %.1f s" % (len(done), time.monotonic() - started))
        return done


def cycles_panels():
    """Cycles' own panels (samples, light paths, ...) so they show for this engine too."""
    for name in dir(bpy.types):
        cls = getattr(bpy.types, name, None)
        engines = getattr(cls, "COMPAT_ENGINES", None)
        if isinstance(engines, set) and "CYCLES" in engines:
            yield cls


CLASSES = (BitwrkSettings, BITWRK_OT_open_ui, BITWRK_PT_settings, BitwrkRenderEngine)


def register():
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.Scene.bitwrk = bpy.props.PointerProperty(type=BitwrkSettings)
    for p in cycles_panels():
        p.COMPAT_ENGINES.add(ENGINE_ID)


def unregister():
    for p in cycles_panels():
        p.COMPAT_ENGINES.discard(ENGINE_ID)
    del bpy.types.Scene.bitwrk
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
