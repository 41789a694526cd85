"""Things that produce differentiable samples for dream3d's guidance losses.

``GENERATORS`` lists the generators an experiment builds by name: (class, config class);
the class is built as ``cls(config, seed, device)``. ``IMAGE_GENERATORS`` lists the
text-conditioned image generators of `dream3d distill`.
"""

from generators.images import DiracConfig, DiracImages, OneStepConfig, OneStepGenerator
from generators.nerf.amortised import TriplaneConfig, TriplaneGenerator
from generators.nerf.generator import NeRFConfig, NeRFGenerator

GENERATORS = {"nerf": (NeRFGenerator, NeRFConfig)}

# Generators trained over the catalogue's captions, built as ``cls(config, teacher, captions,
# shape, seed)``: what `dream3d distill --generator` offers. Their samples are images for the
# teacher: one-step images, Dirac images, or renders of the triplane generator's NeRFs.
IMAGE_GENERATORS = {
    "onestep": (OneStepGenerator, OneStepConfig),
    "dirac": (DiracImages, DiracConfig),
    "triplane": (TriplaneGenerator, TriplaneConfig),
}
