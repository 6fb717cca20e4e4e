"""A competing CPU load for the ``--contention`` runs of the benchmarks (as on a server host where
several model instances, or other tenants, share the cores).

``competing_load(n)`` starts ``n`` processes (fresh interpreters: none inherits torch), each
multiplying 256 x 256 float64 matrices with numpy in a loop, one BLAS thread each, so each keeps
one core busy with real floating-point work (memory traffic and vector units, not only an integer
loop), and stops them on exit. The default count is one per core the measurement leaves to
others: ``os.cpu_count() - threads``, at least 1.

    with competing_load(1) as load:
        ...measure...
        print(load.iterations())   # matmuls done so far by each busy process (proves they run)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["competing_load", "default_count"]

# the busy process: an interpreter of its own (no torch, nothing of the parent), one BLAS thread
_SPIN = """
import sys, numpy as np
rng = np.random.default_rng(int(sys.argv[2]))
a, b = rng.standard_normal((256, 256)), rng.standard_normal((256, 256))
n = 0
while True:
    a = a @ b
    a /= np.abs(a).max()  # keep the values finite
    n += 1
    if n % 16 == 0:
        open(sys.argv[1], "w").write(str(n))
"""


def default_count(threads: int) -> int:
    """One busy process per core not used by the measurement's ``threads``, at least one."""
    return max(1, (os.cpu_count() or 1) - int(threads))


class _Load:
    def __init__(self, files):
        self._files = files

    def iterations(self) -> list[int]:
        out = []
        for f in self._files:
            try:
                out.append(int(Path(f).read_text() or 0))
            except (OSError, ValueError):
                out.append(0)
        return out


@contextlib.contextmanager
def competing_load(n: int):
    """``n`` busy numpy-matmul processes for the duration of the block (n = 0: none)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a count of busy processes (int >= 0), got {n!r}")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    folder = tempfile.mkdtemp(prefix="arrcoc-busy-")
    files = [os.path.join(folder, f"{i}.count") for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN, f, str(i)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for i, f in enumerate(files)]
    try:
        yield _Load(files)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(folder, ignore_errors=True)
