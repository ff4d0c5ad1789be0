#!/usr/bin/env bash
# usage: install_deps_check_test.sh tools/install-deps.sh
# Feeds the guard fake CMakeCache.txt files and checks its verdicts and messages.
set -uo pipefail
script=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0 checks=0

# expect CODE NEEDLE -- ARGS...: the guard exits CODE and its output contains NEEDLE.
expect() {
  local code=$1 needle=$2
  shift 3
  local out rc
  out=$(bash "$script" "$@" 2>&1)
  rc=$?
  checks=$((checks + 1))
  if [ "$rc" -ne "$code" ] || [[ "$out" != *"$needle"* ]]; then
    echo "FAIL: install-deps.sh $* -> exit $rc (want $code), output:"
    echo "$out"
    echo "(wanted it to contain: $needle)"
    failures=$((failures + 1))
  fi
}

cache() {  # cache DIR LINE...: a CMakeCache.txt with these entries
  mkdir -p "$1"
  local d=$1
  shift
  printf '%s\n' "$@" > "$d/CMakeCache.txt"
}

# A package's file that the list reaches (cmake itself), and the CUDA toolkit (exempt by path).
cache "$tmp/ok" "CMAKE_COMMAND:INTERNAL=$(command -v cmake)" "CUDA_NVCC:FILEPATH=/usr/local/cuda/bin/nvcc"
expect 0 "every one from a listed package" -- --check "$tmp/ok"

# A launcher script outside the toolkit that execs the toolkit's nvcc (some machines put one in
# /usr/local/bin, and CMake finds it when /usr/local/cuda/bin is not on PATH): exempt too.
for w in /usr/local/bin/nvcc /usr/bin/nvcc; do
  if [ -f "$w" ] && [ ! -L "$w" ] && [ "$(head -c 2 "$w")" = '#!' ] && grep -q '/usr/local/cuda' "$w" &&
    ! dpkg-query -S "$w" >/dev/null 2>&1; then
    cache "$tmp/wrapper" "CMAKE_CUDA_COMPILER:STRING=$w"
    expect 0 "every one from a listed package" -- --check "$tmp/wrapper"
    break
  fi
done

# A path under /usr that no Debian package owns.
mkdir -p "$tmp/unowned"
unowned=""
for p in /usr/local/bin /usr/local/lib /usr/local/share; do
  if [ -e "$p" ] && ! dpkg-query -S "$p" >/dev/null 2>&1; then unowned=$p; break; fi
done
if [ -n "$unowned" ]; then
  cache "$tmp/unowned" "FOO_DIR:PATH=$unowned"
  expect 1 "FOO_DIR = $unowned belongs to no Debian package" -- --check "$tmp/unowned"
fi

# A file of an installed package that the list does not reach (valgrind is on every machine of
# this kind; skip this case where it is not).
if [ -x /usr/bin/valgrind ] && dpkg-query -S /usr/bin/valgrind >/dev/null 2>&1; then
  cache "$tmp/extra" "BAR_EXECUTABLE:FILEPATH=/usr/bin/valgrind"
  expect 1 "comes from package(s) valgrind, which tools/install-deps.sh neither installs" \
    -- --check "$tmp/extra"
fi

# Bad arguments.
expect 2 "CMakeCache.txt not found" -- --check "$tmp/nowhere"
expect 2 "unknown argument '--bogus'" -- --bogus

if [ "$checks" -lt 3 ]; then echo "only $checks checks could run here"; exit 77; fi
echo "$((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
