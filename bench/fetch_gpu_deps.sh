#!/usr/bin/env bash
# Downloads (here, where Debian's archive is reachable) the Debian 12 packages that idiff
# needs beyond PyTorch into .deps/, for a GPU machine that cannot download them: carry
# .deps with the call and bench/gpu_bench.sh unpacks them into /tmp/idiff-deps when the
# machine lacks the headers. Header-only libraries (nlohmann-json, CLI11, stb), libzip with
# the shared libraries it links, zlib's headers and pkgconf.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps
PACKAGES=(
  nlohmann-json3-dev libcli11-dev libstb-dev libstb0
  libzip-dev libzip4 zlib1g-dev
  libbz2-1.0 liblzma5 libzstd1 libgnutls30 libnettle8 libhogweed6 libgmp10 libp11-kit0
  libtasn1-6 libidn2-0 libunistring2 libffi8
  pkgconf pkgconf-bin libpkgconf3
)
(cd .deps && apt-get download "${PACKAGES[@]}")
du -sh .deps
