#!/bin/sh
# The one way this project is installed: CI (`make`, via .ci/run) and both worker images run this script,
# so the image cannot drift from what CI tested. Usage: infra/install.sh VENV EXTRAS [--editable]
#   infra/install.sh .venv test,s3,infra --editable   # development and CI (the Makefile)
#   infra/install.sh /opt/dfp s3                   # CPU worker image
#   infra/install.sh /opt/dfp s3,gpu               # GPU worker image (TensorFlow with its CUDA wheels)
set -eu
venv="$1"
extras="$2"
editable="${3:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
if [ "$editable" = "--editable" ]; then
  "$venv/bin/python" -m pip install --quiet --no-cache-dir -c "$here/constraints.txt" -e "$here[$extras]"
else
  "$venv/bin/python" -m pip install --quiet --no-cache-dir -c "$here/constraints.txt" "$here[$extras]"
fi
