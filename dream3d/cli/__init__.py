"""The `dream3d` command line: argparse only, each command calling a pipeline."""

from dream3d.config import dotted, parse_set


def flag_overrides(args, flags: dict[str, str], skip=()) -> dict:
    """The config tree the user set: ``--set`` pairs, then the flags (which win); ``flags``
    maps each flag's argparse name to its path in the tree."""
    pairs = dict(parse_set(text) for text in args.sets)
    for flag, path in flags.items():
        if flag not in skip and getattr(args, flag, None) is not None:
            pairs[path] = getattr(args, flag)
    return dotted(pairs)
