#!/usr/bin/env bash
# Tests scripts/plot on the metrics.csv of two short real runs (one with --eval-every, one
# without): the panels it draws, the PNG it writes and where (through a symbolic link, never over a
# run directory's own files or a non-regular file), the format its extension picks, and its
# one-line errors (exit 2), a stdout that cannot be written among them.
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

# The extension picks the format: a PDF for .pdf, PNG without one; one matplotlib does not write is
# refused before drawing.
expect "-o x.pdf writes a PDF" 0 "plot: wrote curves.pdf (4 panels, 1 run)" with_log_p -o curves.pdf
[[ "$(head -c 5 curves.pdf)" == "%PDF-" ]] || fail "curves.pdf is not a PDF"
expect "-o without an extension writes a PNG" 0 "plot: wrote curves (4 panels, 1 run)" \
  with_log_p -o curves
png_size curves >/dev/null || fail "curves (no extension) is not a PNG"
formats="$(/usr/bin/python3 -c 'import matplotlib; matplotlib.use("Agg")
from matplotlib.backend_bases import FigureCanvasBase as C
print(", ".join(sorted(C.get_supported_filetypes())))')"
expect "-o with an extension matplotlib does not write" 2 \
  "plot: cannot write curves.v2: matplotlib writes $formats files, chosen by the extension, not .v2" \
  with_log_p -o curves.v2
[[ ! -e curves.v2 ]] || fail "curves.v2 was written"

expect "a missing run directory" 2 \
  "plot: cannot read nowhere: No such file or directory" nowhere

mkdir header_only
head -1 with_log_p/metrics.csv >header_only/metrics.csv
expect "a metrics.csv with no rows" 2 \
  "plot: header_only/metrics.csv has no metrics rows (header and at least one line)" header_only

expect "a file that is not a CSV text" 2 \
  "plot: with_log_p/W.npy is not a metrics.csv (a CSV text file): 'utf-8' codec can't decode byte 0x93 in position 0: invalid start byte" \
  with_log_p/W.npy

mkdir no_iteration
printf 'a,b\n1,2\n' >no_iteration/metrics.csv
expect "a CSV without an iteration column" 2 \
  "plot: no_iteration/metrics.csv is not a metrics.csv: it has no iteration column" no_iteration

mkdir unknown_columns
printf 'iteration,foo\n1,2\n' >unknown_columns/metrics.csv
expect "a metrics.csv without any column it draws" 2 \
  "plot: no metrics to draw: unknown_columns/metrics.csv has no finite number in any of the columns recon_error_train, free_energy_train, log_p_train, pll_train" \
  unknown_columns

mkdir cut_off
head -c -9 without_log_p/metrics.csv >cut_off/metrics.csv
expect "a metrics.csv whose last row is cut off" 2 \
  "plot: cut_off/metrics.csv: row 4 does not have the header's 8 fields (cut off or edited?)" \
  cut_off

# A row with a field too many: the header's count, not DictReader's (which counted the overflow).
mkdir extra_field
printf 'iteration,recon_error_train\n100,0.1,5\n' >extra_field/metrics.csv
expect "a row with a field too many" 2 \
  "plot: extra_field/metrics.csv: row 2 does not have the header's 2 fields (cut off or edited?)" \
  extra_field
# Values no trainer writes: an iteration that is not a number is refused (its row was dropped
# silently), and nan or inf draws nothing (an empty panel had been written, exit 0).
mkdir bad_iteration not_finite
printf 'iteration,recon_error_train\n100,0.1\nabc,0.1\n' >bad_iteration/metrics.csv
expect "an iteration that is not a number" 2 \
  "plot: bad_iteration/metrics.csv: row 3: the iteration 'abc' is not a number (an edited file?)" \
  bad_iteration
printf 'iteration,recon_error_train\n100,nan\n200,inf\n300,-inf\n' >not_finite/metrics.csv
expect "values that are not finite" 2 \
  "plot: no metrics to draw: not_finite/metrics.csv has no finite number in any of the columns recon_error_train, free_energy_train, log_p_train, pll_train" \
  not_finite

expect "an output that cannot be written, nothing left behind" 2 \
  "plot: cannot write missing_dir/out.png: No such file or directory" with_log_p -o missing_dir/out.png
[[ ! -e missing_dir ]] || fail "the failed write left missing_dir behind"
leftovers="$(find . -name '*.tmp.png')"
[[ -z "$leftovers" ]] || fail "temporary files left behind: $leftovers"

# The output through a symbolic link: its target gets the PNG (as a shell's > writes it), and the
# link stays a link (it was replaced by a regular file, so -o /dev/stdout replaced /dev/stdout).
mkdir linked
echo "old content" >linked/target.png
ln -s linked/target.png link.png
expect "a symbolic link as the output: its target is written" 0 \
  "plot: wrote link.png (4 panels, 1 run)" with_log_p -o link.png
[[ -L link.png && "$(readlink link.png)" == linked/target.png ]] ||
  fail "link.png is no longer the symbolic link to linked/target.png"
[[ "$(png_size linked/target.png)" == 1200x720 ]] ||
  fail "linked/target.png should be the 1200x720 PNG, got $(png_size linked/target.png)"

# Another user's link in a sticky world-writable directory: not followed when the kernel's
# fs.protected_symlinks is on (open(2) would not follow it), followed when it is off. Giving a
# link away needs root; where the setting is off, a mount namespace of its own (unshare -m) with
# a file reading 1 bound over it shows the refusal too.
if [[ "$(id -u)" == 0 ]]; then
  mkdir shared && chmod 1777 shared
  echo "keep" >victim.png
  ln -s ../victim.png shared/theirs.png && chown -h 65534:65534 shared/theirs.png
  refusal="plot: cannot write shared/theirs.png: the symbolic link shared/theirs.png is another user's, in a sticky world-writable directory: not followed, as open(2) would not (fs.protected_symlinks)"
  setting="$(cat /proc/sys/fs/protected_symlinks 2>/dev/null || echo 1)"
  if [[ "$setting" == 1 ]]; then
    expect "another user's link in a sticky directory" 2 "$refusal" with_log_p -o shared/theirs.png
    [[ "$(cat victim.png)" == keep ]] || fail "the link's target was replaced"
  else
    echo 1 >setting_on
    code=0
    actual="$(unshare -m sh -c 'mount --bind "$1" /proc/sys/fs/protected_symlinks && shift &&
      exec "$@"' sh "$scratch/setting_on" "$plot" with_log_p -o shared/theirs.png 2>&1)" || code=$?
    if [[ "$code" == 2 && "$actual" == "$refusal" ]]; then
      echo "ok   another user's link in a sticky directory, fs.protected_symlinks on (unshare -m)"
    elif [[ "$actual" == *"mount"* || "$actual" == *"unshare"* ]]; then
      echo "skip another user's link with fs.protected_symlinks on: no mount namespace here"
    else
      fail "another user's link in a sticky directory, fs.protected_symlinks on: exit $code: $actual"
    fi
    [[ "$(cat victim.png)" == keep ]] || fail "the link's target was replaced"
    expect "another user's link in a sticky directory, fs.protected_symlinks off" 0 \
      "plot: wrote shared/theirs.png (4 panels, 1 run)" with_log_p -o shared/theirs.png
    [[ "$(png_size victim.png)" == 1200x720 ]] || fail "the link's target was not written"
  fi
else
  echo "skip another user's link in a sticky directory (needs root to give a link away)"
fi

# Outputs that are not (or would not become) regular files: refused before drawing.
mkfifo fifo
expect "a named pipe as the output" 2 \
  "plot: cannot write fifo: it exists and is not a regular file" with_log_p -o fifo
[[ -p fifo ]] || fail "the named pipe was replaced"
ln -s fifo fifo_link
expect "a symbolic link to a named pipe" 2 \
  "plot: cannot write fifo_link: it exists and is not a regular file" with_log_p -o fifo_link
[[ -L fifo_link && -p fifo ]] || fail "the link to the named pipe, or the pipe, was replaced"
expect "a directory as the output" 2 \
  "plot: cannot write linked: it is a directory" with_log_p -o linked
expect "a path that names a directory" 2 \
  "plot: cannot write new_dir/: it names a directory, not a file" with_log_p -o new_dir/
[[ ! -e new_dir ]] || fail "the refused new_dir/ was created"

# A run directory's own files (its checkpoint, records or mosaic) are not replaced by a plot.
sums="$(cat with_log_p/W.npy with_log_p/weights.png with_log_p/run.json | cksum)"
expect "the output would replace the run's checkpoint" 2 \
  "plot: with_log_p/W.npy is a file of the run directory with_log_p (its checkpoint, records or mosaic), which plot does not overwrite; name another file" \
  with_log_p -o with_log_p/W.npy
expect "the output would replace another run's mosaic" 2 \
  "plot: with_log_p/weights.png is a file of the run directory with_log_p (its checkpoint, records or mosaic), which plot does not overwrite; name another file" \
  without_log_p with_log_p -o with_log_p/weights.png
ln -s with_log_p/run.json run_json_link
expect "a symbolic link to a run's run.json" 2 \
  "plot: run_json_link is a file of the run directory $scratch/with_log_p (its checkpoint, records or mosaic), which plot does not overwrite; name another file" \
  with_log_p -o run_json_link
[[ "$(cat with_log_p/W.npy with_log_p/weights.png with_log_p/run.json | cksum)" == "$sums" ]] ||
  fail "a refused output changed the run's W.npy, weights.png or run.json"
mkdir not_a_run
expect "such a name outside a run directory is an ordinary output" 0 \
  "plot: wrote not_a_run/weights.png (4 panels, 1 run)" with_log_p -o not_a_run/weights.png
png_size not_a_run/weights.png >/dev/null || fail "not_a_run/weights.png is not a PNG"

# A stdout that cannot be written: one line on stderr, exit 2 (it was a Python traceback).
if [[ -c /dev/full && -w /dev/full ]]; then
  code=0
  actual="$("$plot" with_log_p 2>&1 >/dev/full)" || code=$?
  expected="plot: cannot write to stdout: No space left on device"
  if [[ "$code" != 2 || "$actual" != "$expected" ]]; then
    fail "stdout to /dev/full: scripts/plot with_log_p"
    echo "  expected exit 2: $expected"
    echo "  got exit $code: $actual"
  else
    echo "ok   a full stdout"
  fi
else
  echo "skip a full stdout: no writable /dev/full"
fi
leftovers="$(find . -name '*.tmp.png')"
[[ -z "$leftovers" ]] || fail "temporary files left behind: $leftovers"

if ((failures)); then
  echo "$failures failures"
  exit 1
fi
echo "all scripts/plot checks passed"
