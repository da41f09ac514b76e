//! bitwrk-blender-bridge
