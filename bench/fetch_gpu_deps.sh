#!/usr/bin/env bash
# Downloads (here, where Debian's archive is reachable) the Debian 12 packages that idiff
# needs beyond PyTorch into .deps/, for a GPU machine that cannot download them: carry
# .deps with the call and bench/gpu_bench.sh unpacks them into /tmp/idiff-deps when the
# machine lacks the headers: nlohmann-json, CLI11, stb, libzip, zlib's headers and pkgconf,
# and GoogleTest for the tests of label `gpu`; cpp-httplib and the OpenSSL and Brotli
# headers its pkg-config file requires (`idiff serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps
# libzip4's own needs (libssl3, libbz2, zlib) come with any machine that has Python; zlib1g
# is carried for the libz.so link of zlib1g-dev.
PACKAGES=(
  nlohmann-json3-dev libcli11-dev libstb-dev libstb0
  libzip-dev libzip4 zlib1g-dev zlib1g
  pkgconf pkgconf-bin libpkgconf3
  libgtest-dev
  libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libbrotli-dev libbrotli1
  libpng-dev libpng16-16
)
(cd .deps && apt-get download "${PACKAGES[@]}")
du -sh .deps
