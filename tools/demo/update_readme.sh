#!/usr/bin/env bash
# The README's demo table and docs/demo/ come from a full `lethe demo` run, never by hand:
#   tools/demo/update_readme.sh [DIR]
# runs `build/tools/lethe demo --out DIR` (default demo/) unless DIR/summary.json exists, copies
# its summary.json and plots into docs/demo/, and replaces the README's table between the
# `<!-- demo-table: ... -->` markers with `lethe demo --render docs/demo/summary.json`.
# CliDemo.ReadmeTableIsWhatTheDemoPrints fails when the two differ.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-demo}
lethe=build/tools/lethe
[ -x "$lethe" ] || { echo "update_readme.sh: build first (make build)" >&2; exit 1; }
[ -f "$out/summary.json" ] || "$lethe" demo --out "$out"
mkdir -p docs/demo
cp "$out/summary.json" docs/demo/summary.json
for f in forget_quality_vs_utility forget_loss retain_loss; do
  cp "$out/$f.svg" "docs/demo/$f.svg"
done
table=$(mktemp)
trap 'rm -f "$table" README.md.tmp' EXIT
"$lethe" demo --render docs/demo/summary.json > "$table"
grep -q '^<!-- demo-table: begin -->$' README.md && grep -q '^<!-- demo-table: end -->$' README.md ||
  { echo "update_readme.sh: README.md has no demo-table markers" >&2; exit 1; }
awk -v t="$table" '
  /^<!-- demo-table: begin -->$/ { print; while ((getline l < t) > 0) print l; skip = 1; next }
  /^<!-- demo-table: end -->$/ { skip = 0 }
  !skip { print }' README.md > README.md.tmp
mv README.md.tmp README.md
echo "update_readme.sh: README.md table and docs/demo/ updated from $out/summary.json"
