"""Things that produce differentiable samples for dream3d's guidance losses.

``GENERATORS`` lists the generators an experiment builds by name: (class, config class);
the class is built as ``cls(config, seed, device)``.
"""

from generators.nerf.generator import NeRFConfig, NeRFGenerator

GENERATORS = {"nerf": (NeRFGenerator, NeRFConfig)}
