#!/usr/bin/env bash
# Wheels a bare GPU machine without network needs for bench/gpu_acceptance.py, into .whl/ (git-ignored).
#
# Such machines (the CUDA images rented GPU boxes and our device checks use) ship torch, transformers,
# accelerate and safetensors but not diffusers or bitsandbytes. Both wheels are pure Python or
# manylinux and together take about 50 MB; the versions are the ones constraints.txt tests against.
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# (diffusers' other needs -- huggingface_hub, regex, requests, filelock, Pillow, numpy -- are there already.)
set -euo pipefail
cd "$(dirname "$0")/.."
python_version="${1:-3.12}"   # the GPU machine's Python, not this one's
pin() { grep -E "^$1==" constraints.txt; }
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "$(pin diffusers)" "$(pin bitsandbytes)"
ls -l .whl
