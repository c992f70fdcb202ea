from ascl_jax.parallel.mesh import MESH_AXES, MeshConfig, make_mesh, single_device_mesh
from ascl_jax.parallel.sharding import DEFAULT_RULES, ShardingRules, constrain

__all__ = ["MESH_AXES", "MeshConfig", "make_mesh", "single_device_mesh", "DEFAULT_RULES", "ShardingRules", "constrain"]
