#!/usr/bin/env bash
# Installs every Debian package fluxtrain's build and tests need (idempotent: installs only what
# is missing). Called by `make run` and `make test`; safe to run by hand.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache git pkg-config
  libtorch-dev            # tensors, autograd, kernels (1.13, CPU)
  libopenblas0-openmp     # fast BLAS for libtorch (Debian defaults to the reference BLAS: 30x slower)
  libyaml-cpp-dev         # configs
  nlohmann-json3-dev      # safetensors headers, manifests, metrics
  libfmt-dev              # formatting
  libstb-dev              # PNG/JPEG decode and encode
  libicu-dev              # Unicode normalisation and character classes (CLIP tokenizer)
  libwebp-dev             # WebP decode (image datasets)
  libsnappy-dev libzstd-dev  # parquet page decompression (Hugging Face datasets)
  zlib1g-dev              # gzip (Fashion-MNIST's IDX files), parquet's gzip pages
  dataset-fashion-mnist   # a real dataset a new user can train on without a download
  libgtest-dev googletest # tests
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
