#!/usr/bin/env bash
# Installs the Debian packages lethe builds with. Idempotent; quiet when all are present.
# Runs as root or through sudo. Nothing else is downloaded at build or run time.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libdnnl-dev            # oneDNN: CPU GEMMs (AVX2 / AVX-512 / AMX picked at run time)
  libomp-dev             # OpenMP
  nlohmann-json3-dev     # JSON
  libcli11-dev           # CLI parsing
  libyaml-cpp-dev        # recipes
  libpcre2-dev           # the GPT-2 pre-tokenisation regex (UTF + UCP)
  libsentencepiece-dev sentencepiece  # SentencePiece tokenizers (+ spm_train for fixtures)
  libgtest-dev libgmock-dev libbenchmark-dev  # tests and benchmarks
  clang-format
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
