#!/usr/bin/env bash
# Downloads (here, where apt works) the Debian packages the GPU machine needs to build fluxtrain
# against its own CUDA libtorch, into .deps/ (git-ignored). Carry `.deps` with the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps
cd .deps
apt-get download libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev libfmt-dev libfmt9 libstb-dev \
  libstb0 libgtest-dev googletest libicu-dev libicu72 libwebp-dev libwebp7 libwebpdemux2 \
  libwebpmux3 libsnappy-dev libsnappy1v5 libzstd-dev libzstd1 zlib1g-dev zlib1g
