"""`python tests/killed_run.py ROOT ARGS...`: for each moment, a child process (forked once
the imports are done) runs `dream3d ARGS --out ROOT/<moment>` and sends itself SIGKILL at
that moment, as the OOM killer or a power cut would end it: no finally block, no atexit
handler, no flush runs. Prints each moment and its child's exit status. Moments (a run of
8 steps, a checkpoint every 4):

- ``step-2``: before the first checkpoint (config.yaml written, no checkpoint yet);
- ``checkpoint-1``: inside the first checkpoint's write (half of its bytes written);
- ``step-6``: between checkpoints (the step-4 checkpoint on disk, 6 steps in memory);
- ``checkpoint-2``: inside the step-8 checkpoint's write (the step-4 one still on disk);
- ``outputs``: while the turntable is written (training done, the last checkpoint on disk).
"""

import os
import signal
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the checkout, not tests/dream3d
from dream3d import checkpoint, train  # noqa: E402
from dream3d.cli.main import main  # noqa: E402
from dream3d.pipelines import outputs  # noqa: E402


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _at_step(n: int):
    real = train._step

    def step(generator, guidance, config, opt, sched, cond_fn, state, clock):
        if state.step == n:
            _die()
        return real(generator, guidance, config, opt, sched, cond_fn, state, clock)

    train._step = step


class _CutShort:
    """A file open for writing whose first write stops the process half way through."""

    def __init__(self, file):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        self.file.write(bytes(data)[: len(data) // 2])
        self.file.flush()
        _die()


def _in_checkpoint_write(n: int):
    """Killed inside the n-th write of a checkpoint file, wherever the code writes it."""
    calls = []

    def cut_open(file, mode="r", *args, **kwargs):
        opened = open(file, mode, *args, **kwargs)  # noqa: SIM115 (the caller closes it)
        if "w" in mode and Path(file).name.startswith("checkpoint.pt"):
            calls.append(file)
            if len(calls) == n:
                return _CutShort(opened)
        return opened

    checkpoint.open = cut_open  # the module's open, before the builtin


def _in_outputs():
    def write_video(*args, **kwargs):
        _die()

    outputs.write_video = write_video


MOMENTS = {
    "step-2": lambda: _at_step(2),
    "checkpoint-1": lambda: _in_checkpoint_write(1),
    "step-6": lambda: _at_step(6),
    "checkpoint-2": lambda: _in_checkpoint_write(2),
    "outputs": _in_outputs,
}

if __name__ == "__main__":
    root, args = Path(sys.argv[1]), sys.argv[2:]
    children = {}
    for moment, arm in MOMENTS.items():
        pid = os.fork()
        if pid == 0:  # the child: never returns
            arm()
            os._exit(main([*args, "--out", str(root / moment)]))
        children[moment] = pid
    for moment, pid in children.items():
        status = os.waitpid(pid, 0)[1]
        print(moment, -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
