#!/usr/bin/env bash
# The Python package's tests (scripts/test.sh runs this as a stage):
#  1. a virtual environment under build-py/venv, filled from PyPI with NumPy,
#     ml_dtypes, pytest, scikit-build-core, nanobind, transformers (pinned),
#     PyTorch (CPU use of PyPI's wheel: see install_torch) and MLX's CPU
#     build (mlx[cpu], pinned: see install_mlx);
#  2. `pip install .` of this checkout into it, without build isolation (the
#     venv's nanobind and scikit-build-core build it), the CMake build kept
#     in build-py/cmake for the next run;
#  3. pytest over tests/python (CUDA tests skip themselves without a GPU).
# Writes only under build-py/ (ignored): no bytecode, the pytest cache there.
#
# Env: PYTHON (the interpreter for the venv, default python3);
#      LONGATTN_PY_CUDA=OFF|ON|AUTO (the package's CUDA backend, default OFF:
#        the CUDA kernels take minutes to build and CI has no GPU);
#      LONGATTN_PY_SYSTEM_SITE=1: the venv also sees the interpreter's own
#        packages (a GPU machine's PyTorch), and torch is installed only if
#        it cannot be imported.
# Arguments are passed to pytest, e.g. scripts/test_python.sh -k cancel.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
venv=build-py/venv
py=$venv/bin/python
pip() { "$py" -m pip --quiet "$@"; }
pip_install() { pip install "$@"; }

# PyPI's Linux torch wheel is built against CUDA 13 and pulls several GB of
# nvidia-* wheels. For CPU use it is installed --no-deps with its pure-Python
# dependencies and the four CUDA libraries libtorch loads at import that a
# system CUDA 13 toolkit (/usr/local/cuda here) does not provide; the rest
# (cudart, cublas, cudnn, ...) come from that toolkit. Where that does not
# import, the full `pip install torch` follows. Pinned so that CI installs
# the same thing every run.
torch_ok() { "$py" -c "import torch; torch.ones(2, dtype=torch.bfloat16).sum()" >/dev/null 2>&1; }
install_torch() {
  torch_ok && return 0
  echo "-- installing torch (PyPI wheel, CPU use)"
  pip_install --no-deps torch==2.15.0 &&
    pip_install filelock typing_extensions sympy networkx jinja2 fsspec &&
    pip_install --no-deps nvidia-cusparselt-cu13==0.10.0 nvidia-nvshmem-cu13==3.8.0 \
      nvidia-cufile==1.20.0.107 nvidia-nccl-cu13==2.32.3 &&
    torch_ok && return 0
  echo "-- torch does not import that way; installing it with all its dependencies"
  pip_install torch==2.15.0 && torch_ok && return 0
  echo "== FAILED: torch cannot be installed or imported here:"
  "$py" -c "import torch" || true
  return 1
}

# MLX's Linux CPU build (the wheels mlx and mlx-cpu, about 30 MB) for
# tests/python/test_mlx.py. Those tests skip themselves where mlx cannot be
# imported, so the import is checked here: CI must run them.
mlx_ok() { "$py" -c "import mlx.core as mx; mx.eval(mx.ones(2, dtype=mx.bfloat16).sum())" >/dev/null 2>&1; }
install_mlx() {
  mlx_ok && return 0
  echo "-- installing mlx[cpu] (PyPI)"
  pip_install "mlx[cpu]==0.32.4" && mlx_ok && return 0
  echo "== FAILED: mlx[cpu] cannot be installed or imported here:"
  "$py" -c "import mlx.core" || true
  return 1
}

t0=$SECONDS
if [[ ! -x $py ]] || ! "$py" -c "" 2>/dev/null; then
  rm -rf "$venv"
  site=()
  [[ ${LONGATTN_PY_SYSTEM_SITE:-0} == 1 ]] && site=(--system-site-packages)
  "${PYTHON:-python3}" -m venv "${site[@]}" "$venv"
fi
pip_install "numpy>=1.25" ml_dtypes pytest "scikit-build-core>=0.10" "nanobind>=2.2" transformers==5.24.0
install_torch
install_mlx
echo "-- venv ready ($((SECONDS - t0)) s): $("$py" -c 'import sys, numpy, torch, nanobind, mlx.core
print(f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__}, "
      f"mlx {mlx.core.__version__}, nanobind {nanobind.__version__}")')"

t1=$SECONDS
# No build isolation: the venv's nanobind and scikit-build-core build it, and
# nothing is fetched for the build itself.
if ! pip_install --no-build-isolation -Cbuild-dir=build-py/cmake \
  -Ccmake.define.LONGATTN_CUDA="${LONGATTN_PY_CUDA:-OFF}" -Ccmake.define.LONGATTN_WERROR=ON \
  . >build-py/install.log 2>&1; then
  tail -n 60 build-py/install.log
  echo "== FAILED: pip install . (full log: build-py/install.log)"
  exit 1
fi
echo "-- pip install . ($((SECONDS - t1)) s)"

t2=$SECONDS
# `import longattn` finds the installed package: python/ is not on the path.
status=0
"$py" -m pytest tests/python "$@" || status=$?
echo "-- pytest ($((SECONDS - t2)) s); Python stage $((SECONDS - t0)) s in all"
exit $status
