# bitwrk blender-bridge driver: runs inside a confined `blender -b --factory-startup
# --disable-autoexec` after the untrusted .blend is loaded. It first checks the scene
# against the policy (refusing anything that reads files that were not sent, links
# libraries, carries Python, or costs far more than a tile may), then renders tile jobs
# read as JSON lines from stdin, one at a time, into a fixed output path. Replies go as
# JSON lines to file descriptor 3 only, so nothing Blender prints (object names in
# progress lines, warnings) can be taken for a reply.
#
# Keep to the Python API that Blender 4.x still has.

import json
import os
import sys
import time

import bpy

REPLY = os.fdopen(3, "w", buffering=1, encoding="utf-8")
ARGS = json.loads(sys.argv[sys.argv.index("--") + 1])
OUT_PATH = ARGS["out_path"]
FACES_MAX = int(ARGS["faces_max"])
PARTICLES_MAX = int(ARGS["particles_max"])
THREADS = int(ARGS["threads"])


def reply(obj):
    REPLY.write(json.dumps(obj, sort_keys=True) + "\n")
    REPLY.flush()


class Refused(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


def refuse(reason, message):
    raise Refused(reason, message)


def id_collections():
    """Every ID collection of bpy.data (meshes, images, node_groups, ...)."""
    for name in dir(bpy.data):
        if name.startswith("_") or name in {"window_managers", "workspaces", "screens"}:
            continue
        coll = getattr(bpy.data, name, None)
        if isinstance(coll, bpy.types.bpy_prop_collection):
            yield name, coll


def all_ids():
    for _name, coll in id_collections():
        for idb in coll:
            if isinstance(idb, bpy.types.ID):
                yield idb
                # Node trees embedded in materials, worlds, scenes, lights, textures.
                nt = getattr(idb, "node_tree", None)
                if isinstance(nt, bpy.types.ID) and nt is not idb:
                    yield nt


def node_trees():
    seen = set()
    for idb in all_ids():
        if isinstance(idb, bpy.types.NodeTree) and idb.as_pointer() not in seen:
            seen.add(idb.as_pointer())
            yield idb


def check_policy(scene):
    # Linked libraries read other .blend files from the seller's disk.
    for lib in bpy.data.libraries:
        refuse("bad_input", "links the external library %r: make it local before sending" % lib.filepath)
    # Every file the render needs must travel inside the .blend.
    for img in bpy.data.images:
        if img.source in {"FILE", "SEQUENCE", "MOVIE", "TILED"} and img.packed_file is None and len(img.packed_files) == 0:
            refuse("bad_input", "image %r reads %r, which was not sent: pack resources" % (img.name, img.filepath))
    for clip in bpy.data.movieclips:
        refuse("bad_input", "movie clip %r reads %r, which was not sent" % (clip.name, clip.filepath))
    for snd in bpy.data.sounds:
        if snd.packed_file is None:
            refuse("bad_input", "sound %r reads %r, which was not sent: pack resources" % (snd.name, snd.filepath))
    for font in bpy.data.fonts:
        if font.filepath != "<builtin>" and font.packed_file is None:
            refuse("bad_input", "font %r reads %r, which was not sent: pack resources" % (font.name, font.filepath))
    for vol in bpy.data.volumes:
        if vol.packed_file is None:
            refuse("bad_input", "volume %r reads %r, which was not sent: pack resources" % (vol.name, vol.filepath))
    for cache in bpy.data.cache_files:
        refuse("bad_input", "cache file %r reads %r, which was not sent" % (cache.name, cache.filepath))
    # Python in the file: -Y keeps it from running, but a job that depends on it would
    # render differently here than at the buyer, so refuse it with a clear reason.
    for text in bpy.data.texts:
        if text.use_module:
            refuse("bad_input", "text block %r is registered to run on load: scripts are not run here" % text.name)
    for idb in all_ids():
        ad = getattr(idb, "animation_data", None)
        if ad is None:
            continue
        for fc in ad.drivers:
            drv = fc.driver
            if drv.type == "SCRIPTED" and not drv.is_simple_expression:
                refuse(
                    "bad_input",
                    "%r has a Python driver (%r on %s): Python drivers are not run here"
                    % (idb.name, drv.expression, fc.data_path),
                )
    for nt in node_trees():
        for node in nt.nodes:
            if node.bl_idname == "CompositorNodeOutputFile":
                refuse(
                    "bad_input",
                    "node tree %r has a File Output node writing to %r: not allowed" % (nt.name, node.base_path),
                )
            if node.bl_idname == "ShaderNodeTexIES" and node.mode == "EXTERNAL":
                refuse("bad_input", "IES texture node in %r reads %r, which was not sent" % (nt.name, node.filepath))
            if node.bl_idname == "ShaderNodeScript":
                refuse("unsupported", "OSL script node in %r: OSL is not run here" % nt.name)
    if scene.cycles.shading_system:
        refuse("unsupported", "Open Shading Language is not run here")
    if scene.render.use_freestyle:
        for vl in scene.view_layers:
            if vl.use_freestyle and vl.freestyle_settings.mode == "SCRIPT":
                refuse("bad_input", "Freestyle Python style modules are not run here")
        refuse("unsupported", "Freestyle lines are drawn per tile and would not stitch")
    # Caches on disk and simulations read or write outside the job.
    faces = 0
    particles = 0
    for obj in bpy.data.objects:
        for mod in obj.modifiers:
            if mod.type == "FLUID" and mod.fluid_type == "DOMAIN":
                refuse("bad_input", "fluid domain %r reads a cache directory" % obj.name)
            if mod.type in {"MESH_SEQUENCE_CACHE", "OCEAN"} and (mod.type != "OCEAN" or mod.is_cached):
                refuse("bad_input", "modifier %r on %r reads files from disk" % (mod.name, obj.name))
            cache = getattr(mod, "point_cache", None)
            if cache is not None and cache.use_disk_cache:
                refuse("bad_input", "modifier %r on %r uses a disk cache" % (mod.name, obj.name))
        for ps in obj.particle_systems:
            if ps.point_cache.use_disk_cache:
                refuse("bad_input", "particle system %r on %r uses a disk cache" % (ps.name, obj.name))
            st = ps.settings
            particles += st.count * (1 + max(st.rendered_child_count, 0))
        if obj.type == "MESH":
            est = len(obj.data.polygons)
            for mod in obj.modifiers:
                if mod.type in {"SUBSURF", "MULTIRES"}:
                    est *= 4 ** max(mod.render_levels, 0)
                elif mod.type == "ARRAY" and mod.fit_type == "FIXED_COUNT":
                    est *= max(mod.count, 1)
            faces += est
    if faces > FACES_MAX:
        refuse("fuel_exhausted", "scene too costly: about %d faces after modifiers, at most %d" % (faces, FACES_MAX))
    if particles > PARTICLES_MAX:
        refuse("fuel_exhausted", "scene too costly: %d particles, at most %d" % (particles, PARTICLES_MAX))
    if scene.camera is None:
        refuse("bad_input", "the scene has no camera")


def frame_size(scene):
    r = scene.render
    return (r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100)


def prepare(scene):
    r = scene.render
    scene.render.engine = "CYCLES"
    c = scene.cycles
    c.device = "CPU"
    c.use_adaptive_sampling = False
    c.use_animated_seed = False
    c.use_denoising = False
    c.use_preview_denoising = False
    r.use_compositing = False
    r.use_sequencer = False
    r.use_persistent_data = True
    r.use_border = True
    r.use_crop_to_border = True
    r.threads_mode = "FIXED"
    r.threads = THREADS
    r.filepath = OUT_PATH
    r.use_file_extension = False
    r.use_overwrite = True
    r.use_placeholder = False
    f = r.image_settings
    f.file_format = "OPEN_EXR_MULTILAYER"
    f.color_depth = "32"
    f.exr_codec = "ZIP"
    r.use_stamp = False


def edge(px, size):
    # Border edges are floats that Blender truncates to pixels; px/size in float32 is
    # often one pixel short, (px + 0.5)/size always lands inside pixel px.
    if px <= 0:
        return 0.0
    if px >= size:
        return 1.0
    return (px + 0.5) / size


def render_tile(scene, job):
    w, h = frame_size(scene)
    if (job["width"], job["height"]) != (w, h):
        refuse("bad_input", "the job is for a %dx%d frame, the scene renders %dx%d" % (job["width"], job["height"], w, h))
    x0, y0, x1, y1 = job["x0"], job["y0"], job["x1"], job["y1"]
    r = scene.render
    # The job counts rows from the top; Blender's border from the bottom.
    r.border_min_x = edge(x0, w)
    r.border_max_x = edge(x1, w)
    r.border_min_y = edge(h - y1, h)
    r.border_max_y = edge(h - y0, h)
    scene.cycles.samples = job["samples"]
    scene.cycles.seed = job["seed"]
    for vl in scene.view_layers:
        vl.cycles.denoising_store_passes = bool(job["denoise_data"])
    scene.frame_set(job["frame"])
    if os.path.exists(OUT_PATH):
        os.remove(OUT_PATH)
    t0 = time.process_time()
    bpy.ops.render.render(write_still=True, scene=scene.name)
    if not os.path.exists(OUT_PATH):
        refuse("internal", "Blender wrote no output")
    return time.process_time() - t0


def main():
    scene = bpy.context.scene
    try:
        # Blender falls back to its default scene when the file does not load.
        if not bpy.data.filepath or os.path.realpath(bpy.data.filepath) != os.path.realpath(ARGS["scene_path"]):
            refuse("bad_input", "the scene is not a readable .blend file")
        check_policy(scene)
        prepare(scene)
    except Refused as e:
        reply({"refused": {"reason": e.reason, "message": e.message}})
        return
    w, h = frame_size(scene)
    reply({"ready": {"version": "%d.%d" % bpy.app.version[:2], "width": w, "height": h,
                     "frame_start": scene.frame_start, "frame_end": scene.frame_end}})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cpu_s = render_tile(scene, json.loads(line))
            reply({"done": {"cpu_s": cpu_s}})
        except Refused as e:
            reply({"refused": {"reason": e.reason, "message": e.message}})
        except Exception as e:  # a failed render is a result, and this process ends
            reply({"refused": {"reason": "internal", "message": "render failed: %s" % e}})
            return


try:
    main()
except Exception as e:  # the policy check itself failed: say so instead of hanging
    reply({"refused": {"reason": "internal", "message": "driver failed: %s: %s" % (type(e).__name__, e)}})
