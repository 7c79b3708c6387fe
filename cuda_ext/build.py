"""Build the compiled ops: ``python -m cuda_ext.build [--require-cuda] [--cpu-only]``.

CUDA kernels are compiled whenever nvcc is found: ``CUDA_HOME``, or the toolkit that PyPI's
``nvidia-cuda-nvcc`` package installs beside torch. No GPU is needed to compile, so a kernel
that does not compile fails the build on any machine. Target architectures come from
``TORCH_CUDA_ARCH_LIST`` (default: 8.0 and 9.0, A100 and H100).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cuda_ext import BUILD_DIR, LIBRARY_NAME

CSRC = Path(__file__).resolve().parent / "csrc"
DEFAULT_ARCHS = "8.0;9.0"


def sources(with_cuda: bool) -> list[Path]:
    found = sorted(CSRC.rglob("*.cpp"))
    if with_cuda:
        found += sorted(CSRC.rglob("*.cu"))
    return found


def _pip_toolkit() -> Path | None:
    """The CUDA toolkit folder of PyPI's nvidia packages (nvidia/cu<major>), if installed."""
    try:
        import nvidia
    except ImportError:
        return None
    for base in map(Path, nvidia.__path__):
        for candidate in sorted(base.glob("cu*"), reverse=True):
            if (candidate / "bin" / "nvcc").is_file():
                return candidate
    return None


def find_cuda_home() -> Path | None:
    """A folder laid out as CUDA_HOME (bin/nvcc, include, lib64), or None."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env and (Path(env) / "bin" / "nvcc").is_file():
        return Path(env)
    toolkit = _pip_toolkit()
    if toolkit is None:
        nvcc = shutil.which("nvcc")
        return Path(nvcc).resolve().parent.parent if nvcc else None
    # The pip toolkit keeps libraries in lib/ with versioned names only; torch's build
    # expects lib64/libcudart.so. Lay out a shim folder of links.
    shim = BUILD_DIR / "cuda_home"
    (shim / "lib64").mkdir(parents=True, exist_ok=True)
    for name in ("bin", "include", "nvvm"):
        link = shim / name
        if not link.exists():
            link.symlink_to(toolkit / name)
    for lib in (toolkit / "lib").glob("libcudart.so.*"):
        link = shim / "lib64" / "libcudart.so"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(lib)
        break
    return shim


def _fingerprint(files: Sequence[Path], flags: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for header in sorted([*CSRC.rglob("*.h"), *CSRC.rglob("*.cuh")]):
        digest.update(header.read_bytes())
    digest.update("\0".join(flags).encode())
    return digest.hexdigest()[:16]


def build(*, require_cuda: bool = False, cpu_only: bool = False, verbose: bool = False) -> Path:
    """Compile csrc/ into BUILD_DIR/segstream_ops.so and return its path."""
    cuda_home = None if cpu_only else find_cuda_home()
    if cuda_home is None and require_cuda:
        raise SystemExit(
            "cuda_ext build: nvcc not found; install the build extra "
            "(pip install -e '.[build]') or set CUDA_HOME"
        )
    with_cuda = cuda_home is not None
    if with_cuda:
        os.environ["CUDA_HOME"] = str(cuda_home)
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    import torch.utils.cpp_extension as cpp

    if with_cuda:
        cpp.CUDA_HOME = str(cuda_home)  # it reads the variable once, when first imported
    files = sources(with_cuda)
    # at::parallel_for runs on OpenMP in PyTorch's builds; without -fopenmp the CPU kernels
    # compile to serial loops.
    cflags = ["-O3", "-fopenmp"]
    cuda_flags = ["-O3", "--expt-relaxed-constexpr"]
    flags = [*cflags, *cuda_flags, os.environ.get("TORCH_CUDA_ARCH_LIST", ""), str(with_cuda)]
    stamp = BUILD_DIR / "fingerprint"
    target = BUILD_DIR / f"{LIBRARY_NAME}.so"
    fingerprint = _fingerprint(files, flags)
    if target.is_file() and stamp.is_file() and stamp.read_text() == fingerprint:
        print(f"cuda_ext: up to date ({target})")
        return target
    kind = "CPU only"
    if with_cuda:
        kind = f"CPU + CUDA (nvcc in {cuda_home}, archs {os.environ['TORCH_CUDA_ARCH_LIST']})"
    print(f"cuda_ext: compiling {len(files)} sources, {kind} ...")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    cpp.load(
        name=LIBRARY_NAME,
        sources=[str(f) for f in files],
        extra_cflags=cflags,
        extra_cuda_cflags=cuda_flags,
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(CSRC)],
        build_directory=str(BUILD_DIR),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    stamp.write_text(fingerprint)
    print(f"cuda_ext: built {target} in {time.monotonic() - start:.0f}s")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cuda_ext.build", description=__doc__)
    parser.add_argument("--require-cuda", action="store_true", help="fail when nvcc is not found")
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA sources")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    build(require_cuda=args.require_cuda, cpu_only=args.cpu_only, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
