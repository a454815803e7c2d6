#!/usr/bin/env bash
# The matrix run: the catalogue against every zoo target (and the local kernel), one results file per target
# under reports/matrix/<target>/, then one matrix page: reports/matrix/matrix.html.
# Usage: scripts/matrix.sh [pytest selection and options...]   e.g. scripts/matrix.sh -m "must and not slow"
# Build the zoo first: scripts/zoo.sh (a target whose stack cannot start ends its run at once, exit status 4, with
# the cause as the last line of reports/matrix/<target>.log, and has no results).
set -uo pipefail
cd "$(dirname "$0")/.."
targets=${MATRIX_TARGETS:-"local zoo-linux61-qemu zoo-gvisor zoo-pytcp zoo-lwip zoo-slirp zoo-passt"}
out=${MATRIX_DIR:-reports/matrix}
mkdir -p "$out"
results=()
for target in $targets; do
    echo "matrix: $target" >&2
    .venv/bin/pytest -q "--target=$target" "--report-dir=$out/$target" "$@" >"$out/$target.log" 2>&1
    tail -n 3 "$out/$target.log" | grep -E "^PASS:" >&2 || tail -n 1 "$out/$target.log" >&2
    [ -f "$out/$target/results.json" ] && results+=("$out/$target/results.json")
done
.venv/bin/python -m conformance report merge "${results[@]}" -o "$out/matrix.html"
echo "matrix: $out/matrix.html" >&2
