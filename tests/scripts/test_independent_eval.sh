#!/usr/bin/env bash
# Tests scripts/independent_eval.py against rbm_cpu eval on small models (H 8, binary and ternary
# hidden units, visible biases, digit 5), where both compute exactly what they can: the
# pseudo-log-likelihood of the scored images is exact in both (doubles, different summation orders:
# relative tolerance 1e-9), their mean free energy too, where rbm_cpu's products with W are float
# GEMMs (784-term float sums: relative tolerance 1e-6), rbm_cpu eval's log Z is exact (H <= 12),
# so the script's exact lower bound must lie below it; and the script must score the images
# run.json records (digit 5, its data folder). Its AIS is random and is checked by its own --check.
# Then its refusals (a --json path that is a directory, in a missing directory, a named pipe or a
# model's own file; a negative --seed), --json through a symbolic link, and a full stdout.
# Usage: test_independent_eval.sh REPO RBM_CPU MNIST_DIR
set -euo pipefail

repo="$1" trainer="$2" mnist="$3"
script="$repo/scripts/independent_eval.py"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"

# numpy with the system's python3, as scripts/setup installs it.
python=/usr/bin/python3
[[ -x "$python" ]] || python=python3

failures=0
for type in binary ternary; do
  "$trainer" --hidden-type "$type" --visible-bias --hidden 8 --digit 5 --iters 300 \
    --log-every 300 --data "$mnist" --out "$type" >/dev/null 2>&1
  "$python" "$script" --runs 20 --betas 500 --json "$type.json" "$type" >/dev/null
  "$trainer" eval "$type" --json >"$type.eval.json"
  if ! "$python" - "$type" <<'PY'; then
import json, sys
name = sys.argv[1]
ours = json.load(open(name + ".eval.json"))
theirs = json.load(open(name + ".json"))
problems = []
def close(what, a, b, rel=1e-9):
    if abs(a - b) > rel * max(abs(a), abs(b)):
        problems.append("%s: rbm_cpu eval %.17g, independent_eval.py %.17g" % (what, a, b))
if ours["log_z_method"] != "exact":
    problems.append("rbm_cpu eval did not compute log Z exactly: " + ours["log_z_method"])
close("PLL", ours["avg_pll"], theirs["test_avg_pll"])
# avg log p = -F - log Z: rbm_cpu eval's exact log Z gives its mean -F.
close("mean -F", ours["avg_log_p"] + ours["log_z"], theirs["test_avg_neg_free_energy"], 1e-6)
if not theirs["log_z_lower_bound"] <= ours["log_z"]:
    problems.append("the exact lower bound %.6f is above the exact log Z %.6f"
                    % (theirs["log_z_lower_bound"], ours["log_z"]))
for key, want in (("hidden_type", name), ("digit", 5), ("digit_from", "run.json"),
                  ("n_test", ours["n_images"])):
    if theirs.get(key) != want:
        problems.append("%s: %r, expected %r" % (key, theirs.get(key), want))
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
    echo "FAIL $type"
    failures=$((failures + 1))
  else
    echo "ok   $type"
  fi
done

# Flags and --json paths that cannot work are refused up front (argparse's exit 2, its usage and
# then one line), before minutes of evaluation; they were tracebacks at the end, or at the start.
# refused NAME EXPECTED_LAST_LINE ARGS...
refused() {
  local name="$1" expected="$2"
  shift 2
  local out err code=0
  out="$("$python" "$script" --runs 2 --betas 3 "$@" 2>"$scratch/stderr")" || code=$?
  err="$(tail -n 1 "$scratch/stderr")"
  if [[ "$code" != 2 || -n "$out" || "$err" != "$expected" ]]; then
    echo "FAIL $name: independent_eval.py $*"
    echo "  expected exit 2, no stdout, last line: $expected"
    echo "  got exit $code, stdout '$out', last line: $err"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}
prog="independent_eval.py: error:"
mkdir json_dir
refused "--json a directory" "$prog --json json_dir: is a directory" binary --json json_dir
[[ ! -e json_dir.tmp ]] || { echo "FAIL --json json_dir left json_dir.tmp"; failures=$((failures + 1)); }
refused "--json in a missing directory" \
  "$prog --json no_dir/x.json: its directory no_dir does not exist" binary --json no_dir/x.json
mkfifo json_fifo
refused "--json a named pipe" "$prog --json json_fifo: exists and is not a regular file" \
  binary --json json_fifo
[[ -p json_fifo ]] || { echo "FAIL the named pipe was replaced"; failures=$((failures + 1)); }
sums="$(cat binary/W.npy binary/run.json | cksum)"
refused "--json a model's own file" \
  "$prog --json binary/W.npy: is a file of the run directory binary (its checkpoint, records or mosaic), which this script does not overwrite; name another file" \
  binary --json binary/W.npy
[[ "$(cat binary/W.npy binary/run.json | cksum)" == "$sums" ]] ||
  { echo "FAIL a refused --json changed binary/W.npy or run.json"; failures=$((failures + 1)); }
refused "a negative --seed" "$prog --seed must be at least 0" binary --seed -1
refused "too few --betas" "$prog --betas must be at least 3" binary --betas 2

# --json through a symbolic link writes its target (as a shell's > does); the link stays a link.
mkdir linked
echo "old content" >linked/target.json
ln -s linked/target.json link.json
if "$python" "$script" --runs 2 --betas 3 --json link.json binary >/dev/null &&
   [[ -L link.json && "$(readlink link.json)" == linked/target.json ]] &&
   "$python" -c 'import json, sys; assert json.load(open(sys.argv[1]))["model"] == "binary"' \
     linked/target.json; then
  echo "ok   --json through a symbolic link"
else
  echo "FAIL --json link.json: the link was replaced, or its target does not hold the numbers"
  failures=$((failures + 1))
fi

# A stdout that cannot take the report: one line on stderr, not a traceback.
if [[ -c /dev/full && -w /dev/full ]]; then
  code=0
  err="$("$python" "$script" --runs 2 --betas 3 binary 2>&1 >/dev/full)" || code=$?
  expected="error: cannot write the report to stdout: No space left on device"
  if [[ "$code" != 1 || "$err" != "$expected" ]]; then
    echo "FAIL stdout to /dev/full"
    echo "  expected exit 1: $expected"
    echo "  got exit $code: $err"
    failures=$((failures + 1))
  else
    echo "ok   a full stdout"
  fi
else
  echo "skip a full stdout: no writable /dev/full"
fi

if ((failures)); then
  echo "$failures failures"
  exit 1
fi
echo "all independent_eval.py checks passed"
