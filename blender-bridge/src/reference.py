# A plain local Cycles render of a whole frame, with the settings the bridge's driver
# uses for tiles (CPU, fixed seed, adaptive sampling and denoising off, 32-bit float
# multilayer EXR) but no render border: the reference that stitched tiles must equal.
# Args after "--": JSON {"out_path", "frame", "samples", "seed", "threads"}.
import json
import sys

import bpy

a = json.loads(sys.argv[sys.argv.index("--") + 1])
scene = bpy.context.scene
r = scene.render
scene.render.engine = "CYCLES"
c = scene.cycles
c.device = "CPU"
c.use_adaptive_sampling = False
c.use_animated_seed = False
c.use_denoising = False
c.samples = a["samples"]
c.seed = a["seed"]
r.use_compositing = False
r.use_sequencer = False
r.use_border = False
r.threads_mode = "FIXED"
r.threads = a["threads"]
r.filepath = a["out_path"]
r.use_file_extension = False
r.use_stamp = False
f = r.image_settings
f.file_format = "OPEN_EXR_MULTILAYER"
f.color_depth = "32"
f.exr_codec = "ZIP"
scene.frame_set(a["frame"])
bpy.ops.render.render(write_still=True, scene=scene.name)
