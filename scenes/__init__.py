"""The toy world: procedural objects with ground truth (issue 3)."""
