"""Whole experiments as a library: text-to-3D, compare, bench, the labs, teacher and judge
training. They wire the core, generators/ and scenes/ together and return results; they print
nothing but progress."""
