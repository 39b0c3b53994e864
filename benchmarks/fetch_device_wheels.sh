#!/usr/bin/env bash
# Here (with a registry), before a device run: the cp312 wheels device_check.sh installs there
# (the device machine has no registry). .whl/ is git-ignored; name it in the run's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  scipy-openblas32==0.3.34.481.3 pybind11==3.1.0 scikit-build-core==1.1.2
ls -la .whl
