"""Things that produce differentiable samples for dream3d's guidance losses."""
