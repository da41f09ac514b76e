# Builds a small self-contained Cycles test scene (no external assets) and saves it to
# the path after "--". Optional second argument: a hostile variant to add (see HOSTILE).
import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1:]
out = args[0]
variant = args[1] if len(args) > 1 else "plain"
arg = args[2] if len(args) > 2 else ""

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.render.resolution_x = 160
scene.render.resolution_y = 120
if variant == "plain" and "x" in arg:
    scene.render.resolution_x, scene.render.resolution_y = (int(v) for v in arg.split("x"))
scene.render.resolution_percentage = 100
scene.cycles.samples = 16
scene.cycles.use_denoising = False
scene.cycles.use_adaptive_sampling = False
scene.frame_start = 1
scene.frame_end = 3

mesh = bpy.data.meshes.new("ground")
mesh.from_pydata([(-4, -4, 0), (4, -4, 0), (4, 4, 0), (-4, 4, 0)], [], [(0, 1, 2, 3)])
ground = bpy.data.objects.new("ground", mesh)
scene.collection.objects.link(ground)

bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(0, 0, 1), segments=24, ring_count=12)
sphere = bpy.context.active_object
mat = bpy.data.materials.new("red")
mat.use_nodes = True
mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.8, 0.1, 0.1, 1)
mat.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.3
sphere.data.materials.append(mat)
bpy.ops.mesh.primitive_cube_add(size=1.0, location=(2, 1, 0.5))
cube = bpy.context.active_object
# Animated so frames differ.
cube.location = (2, 1, 0.5)
cube.keyframe_insert("location", frame=1)
cube.location = (2, -1, 0.5)
cube.keyframe_insert("location", frame=3)

light_data = bpy.data.lights.new("sun", "SUN")
light_data.energy = 3.0
light = bpy.data.objects.new("sun", light_data)
light.rotation_euler = (0.6, 0.2, 0.4)
scene.collection.objects.link(light)
world = bpy.data.worlds.new("world")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.2, 0.3, 0.5, 1)
scene.world = world

cam_data = bpy.data.cameras.new("cam")
cam = bpy.data.objects.new("cam", cam_data)
cam.location = (0, -7, 3.5)
cam.rotation_euler = (1.15, 0, 0)
scene.collection.objects.link(cam)
scene.camera = cam

if variant == "text_on_load":
    t = bpy.data.texts.new("evil.py")
    t.write("open(%r, 'w').write('ran')\n" % arg)
    t.use_module = True
elif variant == "python_driver":
    fc = sphere.driver_add("location", 0)
    fc.driver.type = "SCRIPTED"
    fc.driver.expression = "__import__('os').system('touch %s') or 0" % arg
elif variant == "frame_handler":
    t = bpy.data.texts.new("handler.py")
    t.write(
        "import bpy\n"
        "def h(scene, *a):\n"
        "    open(%r, 'w').write('ran')\n"
        "bpy.app.handlers.frame_change_pre.append(h)\n" % arg
    )
    t.use_module = True
elif variant == "file_output":
    scene.use_nodes = True
    tree = scene.node_tree
    rl = tree.nodes.get("Render Layers") or tree.nodes.new("CompositorNodeRLayers")
    fo = tree.nodes.new("CompositorNodeOutputFile")
    fo.base_path = arg
    tree.links.new(rl.outputs["Image"], fo.inputs[0])
elif variant == "linked_library":
    # arg: absolute path of another .blend holding a mesh named "libmesh".
    with bpy.data.libraries.load(arg, link=True) as (src, dst):
        dst.objects = ["libobj"]
    for o in dst.objects:
        scene.collection.objects.link(o)
elif variant == "library_source":
    lm = bpy.data.meshes.new("libmesh")
    lm.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    lo = bpy.data.objects.new("libobj", lm)
    scene.collection.objects.link(lo)
elif variant == "external_image":
    img = bpy.data.images.load(arg, check_existing=False)
    tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = img
elif variant == "too_costly":
    mod = sphere.modifiers.new("subd", "SUBSURF")
    mod.levels = 1
    mod.render_levels = 11
elif variant != "plain":
    raise SystemExit("unknown variant " + variant)

bpy.ops.wm.save_as_mainfile(filepath=out, compress=False, relative_remap=False)
