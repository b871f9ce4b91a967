#!/usr/bin/env bash
# Tests scripts/plot on the metrics.csv of two short real runs (one with --eval-every, one
# without): the panels it draws, the PNG it writes and where, and its one-line errors (exit 2).
# Usage: test_plot_script.sh REPO RBM_CPU MNIST_DIR
set -euo pipefail

repo="$1" trainer="$2" mnist="$3"
plot="$repo/scripts/plot"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"

"$trainer" --iters 40 --hidden 8 --log-every 10 --eval-every 20 --split train \
  --data "$mnist" --out with_log_p >/dev/null 2>&1
"$trainer" --iters 30 --hidden 8 --log-every 10 --data "$mnist" --out without_log_p \
  >/dev/null 2>&1

failures=0
fail() {
  echo "FAIL $*"
  failures=$((failures + 1))
}
# expect NAME EXPECTED_EXIT EXPECTED_OUTPUT ARGS...: stdout and stderr together.
expect() {
  local name="$1" expected_code="$2" expected="$3"
  shift 3
  local actual code=0
  actual="$("$plot" "$@" 2>&1)" || code=$?
  if [[ "$code" != "$expected_code" || "$actual" != "$expected" ]]; then
    fail "$name: scripts/plot $*"
    echo "  expected exit $expected_code: $expected"
    echo "  got exit $code: $actual"
  else
    echo "ok   $name"
  fi
}
# png_size FILE: "WIDTHxHEIGHT" from the PNG's IHDR chunk (bytes 16..23, big-endian).
png_size() {
  python3 -c 'import struct, sys
data = open(sys.argv[1], "rb").read(24)
assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
print("%dx%d" % struct.unpack(">II", data[16:24]))' "$1"
}

# A figure has 2 columns of 6 x 3.6 inch panels (1 column for a single panel), at 100 dpi.
expect "a run with log p(x): four panels, default output in the run directory" 0 \
  "plot: wrote $scratch/with_log_p/metrics.png (4 panels, 1 run)" with_log_p
[[ "$(png_size with_log_p/metrics.png)" == 1200x720 ]] ||
  fail "4 panels should be 1200x720 pixels, got $(png_size with_log_p/metrics.png)"

expect "a run without --eval-every: no log-likelihood panel" 0 \
  "plot: wrote $scratch/without_log_p/metrics.png (3 panels, 1 run)" without_log_p/metrics.csv
[[ "$(png_size without_log_p/metrics.png)" == 1200x720 ]] ||
  fail "3 panels (2 rows, the fourth place left empty) should be 1200x720 pixels, got $(png_size without_log_p/metrics.png)"

expect "two runs share the axes, -o names the output" 0 \
  "plot: wrote both.png (4 panels, 2 runs)" without_log_p with_log_p -o both.png
png_size both.png >/dev/null || fail "both.png is not a PNG"

expect "a missing run directory" 2 \
  "plot: cannot read nowhere: No such file or directory" nowhere

mkdir header_only
head -1 with_log_p/metrics.csv >header_only/metrics.csv
expect "a metrics.csv with no rows" 2 \
  "plot: header_only/metrics.csv has no metrics rows (header and at least one line)" header_only

expect "a file that is not a CSV text" 2 \
  "plot: with_log_p/W.npy is not a metrics.csv (a CSV text file): 'utf-8' codec can't decode byte 0x93 in position 0: invalid start byte" \
  with_log_p/W.npy

mkdir unknown_columns
printf 'iteration,foo\n1,2\n' >unknown_columns/metrics.csv
expect "a metrics.csv without any column it draws" 2 \
  "plot: no metrics to draw: unknown_columns/metrics.csv has none of the columns recon_error_train, free_energy_train, log_p_train, pll_train" \
  unknown_columns

mkdir cut_off
head -c -9 without_log_p/metrics.csv >cut_off/metrics.csv
expect "a metrics.csv whose last row is cut off" 2 \
  "plot: cut_off/metrics.csv: row 4 does not have the header's 8 fields (cut off or edited?)" \
  cut_off

expect "an output that cannot be written, nothing left behind" 2 \
  "plot: cannot write missing_dir/out.png: No such file or directory" with_log_p -o missing_dir/out.png
[[ ! -e missing_dir ]] || fail "the failed write left missing_dir behind"
leftovers="$(find . -name '*.tmp.png')"
[[ -z "$leftovers" ]] || fail "temporary files left behind: $leftovers"

if ((failures)); then
  echo "$failures failures"
  exit 1
fi
echo "all scripts/plot checks passed"
