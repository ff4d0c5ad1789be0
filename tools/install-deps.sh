#!/usr/bin/env bash
# Installs the Debian packages lethe builds with. Idempotent; quiet when all are present.
# Runs as root or through sudo. Nothing else is downloaded at build or run time.
#
#   tools/install-deps.sh                 install what is missing
#   tools/install-deps.sh --check [DIR…]  the guard: every file CMake found under /usr in the build
#                                         trees DIR… (default: build build-asan, those configured)
#                                         must belong to a package this script installs, to their
#                                         Depends/Pre-Depends closure, or to build-essential's.
#   tools/install-deps.sh --list          the package names, one a line
#
# Why each package is needed: docs/build.md. Keep the two lists in step.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  ccache                 # compiler launcher for C++ and CUDA: fresh clones rebuild in minutes
  libdnnl-dev            # oneDNN: CPU GEMMs (AVX2 / AVX-512 / AMX picked at run time)
  ocl-icd-opencl-dev     # oneDNN's CMake package (dnnl-config.cmake) requires OpenCL; only a
                         # Recommends of libdnnl-dev, so --no-install-recommends skips it
  libomp-dev             # OpenMP
  nlohmann-json3-dev     # JSON
  libcli11-dev           # CLI parsing
  libyaml-cpp-dev        # recipes
  libpcre2-dev           # the GPT-2 pre-tokenisation regex (UTF + UCP)
  zlib1g-dev             # the ZLib membership-inference attack (compressed text length)
  libopenmpi-dev openmpi-bin  # data-parallel training: mpirun and MPI collectives on CPU buffers
  libsentencepiece-dev sentencepiece  # SentencePiece tokenizers (+ spm_train for fixtures)
  libutf8proc-dev        # Unicode normalisation (NFC) for tokenizer.json normalizers (Qwen2)
  libgtest-dev libgmock-dev libbenchmark-dev  # tests and benchmarks
  clang-format
  clang libclang-rt-14-dev   # make fuzz: clang with libFuzzer and its sanitizer runtimes
)

# Paths exempt from the guard: the CUDA toolkit is preinstalled outside Debian's packages.
exempt_prefixes=(/usr/local/cuda)

# --check ------------------------------------------------------------------------------------------
# Prints the packages reachable from the named ones (plus build-essential and Debian's Essential
# packages, present on every system) through Depends and Pre-Depends, one a line, without architecture qualifiers. Virtual names (<x>) are kept bare: a
# package that Provides one is reached through it.
closure() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" 2>/dev/null |
    sed -n 's/^<\{0,1\}\([^ <>|:][^ <>:]*\)\(:[a-z0-9]*\)\{0,1\}>\{0,1\}$/\1/p' | sort -u
}

# The packages that own PATH (dpkg -S), one a line; also tries the other side of Debian's
# merged /usr (/lib ↔ /usr/lib) and the resolved path of a symlink.
owners() {
  local p=$1 alt real cand out=""
  real=$(readlink -f -- "$p" 2>/dev/null || echo "$p")
  case $p in
    /usr/lib/* | /usr/bin/* | /usr/sbin/*) alt=${p#/usr} ;;
    /lib/* | /bin/* | /sbin/*) alt=/usr$p ;;
    *) alt=$p ;;
  esac
  for cand in "$p" "$alt" "$real"; do
    out=$(dpkg-query -S -- "$cand" 2>/dev/null | grep -v '^diversion ' | sed 's/: [^:]*$//' |
      tr ',' '\n' | sed 's/^ *//; s/:.*$//' | sort -u) || true
    [ -n "$out" ] && { echo "$out"; return 0; }
  done
  return 0
}

# The cache entries of one CMakeCache.txt that name existing paths under /usr: "KEY<TAB>PATH".
# Values may be ;-lists (e.g. OpenMP or pkg-config library lists). CMake's own settings that are
# not "found" things (install prefixes, the generator program, …) are skipped.
found_paths() {
  grep -E '^[A-Za-z0-9_.+-]+:(PATH|FILEPATH|STRING|INTERNAL)=' "$1" |
    grep -Ev '^(CMAKE_INSTALL_[A-Za-z_]*|_GNUInstallDirs_[A-Za-z_]*|CMAKE_[A-Z_]*_COMPILER_LAUNCHER|CMAKE_HOME_DIRECTORY|CMAKE_CACHEFILE_DIR)[:]' |
    while IFS= read -r line; do
      key=${line%%:*}
      val=${line#*=}
      IFS=';' read -r -a items <<<"$val"
      for v in "${items[@]}"; do
        v=${v#-L}
        v=${v#-I}
        case $v in /usr/* | /lib/* | /bin/*) ;; *) continue ;; esac
        [ -e "$v" ] && printf '%s\t%s\n' "$key" "$v"
      done
    done | sort -u -k2,2
}

# True when PATH is part of the CUDA toolkit: it, or what it resolves to, lies under an exempt
# prefix; or it is a small launcher script (as some machines put in /usr/local/bin for nvcc,
# ptxas, …) whose exec line runs a program under one.
under_exempt() {
  local ex
  for ex in "${exempt_prefixes[@]}"; do
    case $1 in "$ex" | "$ex"/* | "$ex"-*) return 0 ;; esac
  done
  return 1
}
exempt() {
  local p=$1 target
  under_exempt "$p" && return 0
  under_exempt "$(readlink -f -- "$p" 2>/dev/null || echo "$p")" && return 0
  if [ -f "$p" ] && [ "$(stat -c %s -- "$p")" -le 4096 ] && [ "$(head -c 2 -- "$p")" = '#!' ]; then
    target=$(sed -n 's/^[[:space:]]*exec[[:space:]]\{1,\}"\{0,1\}\([^" ]*\).*/\1/p' -- "$p" | head -n 1)
    [ -n "$target" ] && under_exempt "$(readlink -f -- "$target" 2>/dev/null || echo "$target")" && return 0
  fi
  return 1
}

check() {
  local dirs=("$@") caches=() d
  if [ ${#dirs[@]} -eq 0 ]; then
    for d in build build-asan; do [ -f "$d/CMakeCache.txt" ] && dirs+=("$d"); done
  fi
  for d in "${dirs[@]}"; do
    [ -f "$d/CMakeCache.txt" ] || { echo "install-deps --check: $d/CMakeCache.txt not found (configure first)" >&2; return 2; }
    caches+=("$d/CMakeCache.txt")
  done
  [ ${#caches[@]} -gt 0 ] || { echo "install-deps --check: no configured build tree (build/ or build-asan/)" >&2; return 2; }

  local allowed essential
  essential=$(dpkg-query -W -f='${Package} ${Essential}\n' | awk '$2 == "yes" { print $1 }')
  # shellcheck disable=SC2086
  allowed=$(closure "${packages[@]}" build-essential $essential)
  if [ -z "$allowed" ] && [ "$(id -u)" -eq 0 ]; then  # no package lists yet on this machine
    apt-get update -qq >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    allowed=$(closure "${packages[@]}" build-essential $essential)
  fi
  [ -n "$allowed" ] || { echo "install-deps --check: apt-cache gave no dependency closure (run apt-get update)" >&2; return 2; }

  local bad=0 checked=0 cache key path pkgs pkg ok
  for cache in "${caches[@]}"; do
    while IFS=$'\t' read -r key path; do
      exempt "$path" && continue
      checked=$((checked + 1))
      pkgs=$(owners "$path")
      if [ -z "$pkgs" ]; then
        echo "install-deps --check: $cache: $key = $path belongs to no Debian package (installed by hand?)" >&2
        bad=1
        continue
      fi
      ok=0
      for pkg in $pkgs; do grep -qxF -- "$pkg" <<<"$allowed" && { ok=1; break; }; done
      if [ $ok -eq 0 ]; then
        echo "install-deps --check: $cache: $key = $path comes from package(s) $(echo $pkgs | tr ' ' ','), which tools/install-deps.sh neither installs nor reaches through Depends" >&2
        bad=1
      fi
    done < <(found_paths "$cache")
  done
  if [ $bad -ne 0 ]; then
    echo "install-deps --check: FAILED: add the package(s) above to tools/install-deps.sh (and docs/build.md)" >&2
    return 1
  fi
  echo "install-deps --check: $checked found path(s) in ${caches[*]}: every one from a listed package or its dependencies"
}

case "${1:-}" in
  --check) shift; check "$@"; exit $? ;;
  --list) printf '%s\n' "${packages[@]}"; exit 0 ;;
  "") ;;
  *) echo "install-deps: unknown argument '$1' (use --check [DIR…] or --list)" >&2; exit 2 ;;
esac

# install -----------------------------------------------------------------------------------------
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
