from types import SimpleNamespace

import pytest

from dream3d.cli.main import main


@pytest.fixture()
def cli(capsys):
    """`dream3d ARGS` in this process (seconds faster than a fresh one): its exit code, stdout
    and stderr, as subprocess.run gives them. An uncaught exception fails the test."""

    def run(*args):
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse's own errors and --help
            code = stop.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run
