# Run by the add-on in a separate `blender -b --factory-startup --disable-autoexec`
# on a copy of the scene: makes linked data local, packs every external file, strips
# what a seller refuses (Python drivers, scripts, File Output nodes) and saves the
# packed .blend the sellers receive. Args after "--": JSON {"out", "scene"}.
import json
import sys

import bpy

a = json.loads(sys.argv[sys.argv.index("--") + 1])
notes = []

# Make everything linked local, then drop the libraries.
for name in dir(bpy.data):
    coll = getattr(bpy.data, name, None)
    if not isinstance(coll, bpy.types.bpy_prop_collection) or name in {"libraries", "window_managers", "workspaces", "screens"}:
        continue
    for idb in list(coll):
        if isinstance(idb, bpy.types.ID) and idb.library is not None:
            idb.make_local()
for lib in list(bpy.data.libraries):
    bpy.data.libraries.remove(lib)

try:
    bpy.ops.file.pack_all()
except RuntimeError as e:
    notes.append("packing: %s" % e)

# Scripts never run on sellers: drop registered text blocks and Python drivers (the
# property keeps its last evaluated value).
for text in list(bpy.data.texts):
    if text.use_module:
        notes.append("removed script %s" % text.name)
        bpy.data.texts.remove(text)


def ids():
    for name in dir(bpy.data):
        coll = getattr(bpy.data, name, None)
        if isinstance(coll, bpy.types.bpy_prop_collection) and name not in {"window_managers", "workspaces", "screens"}:
            for idb in coll:
                if isinstance(idb, bpy.types.ID):
                    yield idb
                    nt = getattr(idb, "node_tree", None)
                    if isinstance(nt, bpy.types.ID):
                        yield nt


for idb in list(ids()):
    ad = getattr(idb, "animation_data", None)
    if ad is None:
        continue
    for fc in list(ad.drivers):
        if fc.driver.type == "SCRIPTED" and not fc.driver.is_simple_expression:
            notes.append("removed Python driver %s on %s" % (fc.data_path, idb.name))
            ad.drivers.remove(fc)
for idb in list(ids()):
    if isinstance(idb, bpy.types.NodeTree):
        for node in list(idb.nodes):
            if node.bl_idname == "CompositorNodeOutputFile":
                idb.nodes.remove(node)

# Keep only the scene being rendered (and its background sets), so it is the one the
# seller's Blender opens.
keep = set()
s = bpy.data.scenes.get(a["scene"])
while s is not None and s.name not in keep:
    keep.add(s.name)
    s = s.background_set
for s in list(bpy.data.scenes):
    if s.name not in keep and len(bpy.data.scenes) > 1:
        bpy.data.scenes.remove(s)
scene = bpy.data.scenes[a["scene"]]
scene.render.engine = "CYCLES"
bpy.ops.wm.save_as_mainfile(filepath=a["out"], compress=False, relative_remap=False, copy=True)
print("BITWRK-PACK-NOTES " + json.dumps(notes))
