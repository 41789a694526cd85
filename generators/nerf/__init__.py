"""The NeRF generator's parts: a hash-grid field and its volume renderer (DESIGN.md section 5).

``field``: ``NeRFField`` (hash grid -> MLP -> density, albedo, normals) and its presets.
``render``: pure rendering functions that take the field as a callable, DreamFusion shading,
the regularisers and, on CUDA, nerfacc's occupancy grid. ``export`` (meshes, turntables)
is imported on its own: it needs trimesh and scipy.
"""

from generators.nerf.field import (
    FieldConfig,
    HashGrid,
    HashGridConfig,
    NeRFField,
    TcnnHashGrid,
)
from generators.nerf.render import (
    OccGridConfig,
    RegulariserConfig,
    RenderConfig,
    ShadingConfig,
    composite,
    occupancy_grid,
    opaque_loss,
    orientation_loss,
    pick_shading,
    ray_box,
    ray_sphere,
    regularisers,
    render_image,
    render_rays,
    shade,
    sparsity_loss,
    stratified_samples,
    update_occupancy_grid,
    volume_weights,
)

__all__ = [
    "FieldConfig",
    "HashGrid",
    "HashGridConfig",
    "NeRFField",
    "OccGridConfig",
    "RegulariserConfig",
    "RenderConfig",
    "ShadingConfig",
    "TcnnHashGrid",
    "composite",
    "occupancy_grid",
    "opaque_loss",
    "orientation_loss",
    "pick_shading",
    "ray_box",
    "ray_sphere",
    "regularisers",
    "render_image",
    "render_rays",
    "shade",
    "sparsity_loss",
    "stratified_samples",
    "update_occupancy_grid",
    "volume_weights",
]
