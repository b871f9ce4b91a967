#!/usr/bin/env bash
# Tests scripts/independent_eval.py against rbm_cpu eval on small models (H 8, binary and ternary
# hidden units, visible biases, digit 5), where both compute everything exactly: log Z by
# enumerating the hidden states (--method exact in both; doubles, different summation orders:
# relative tolerance 1e-9), the pseudo-log-likelihood of the scored images (1e-9 too), their mean
# free energy, where rbm_cpu's products with W are float GEMMs (784-term float sums: relative
# tolerance 1e-6); the script's exact lower bound must lie below log Z; and the script must score
# the images run.json records (digit 5, its data folder). --method auto (the default) enumerates
# too at H 8 and says that the AIS flags given went unused. Its AIS is random and is checked by its
# own --check; here only that --method ais runs it. Then its refusals (a --json path that is a
# directory, in a missing directory, a named pipe or a model's own file; a negative --seed; AIS
# flags with --method exact; --method exact above H = 20 binary, 12 ternary: one line), --json
# through a symbolic link, the report's log p(x) lines per split, and a full stdout.
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
  "$python" "$script" --method exact --json "$type.json" "$type" >/dev/null
  "$python" "$script" --runs 20 --seed 4 --json "$type.auto.json" "$type" >/dev/null
  "$trainer" eval "$type" --method exact --json >"$type.eval.json"
  if ! "$python" - "$type" <<'PY'; then
import json, sys
name = sys.argv[1]
ours = json.load(open(name + ".eval.json"))
theirs = json.load(open(name + ".json"))
auto = json.load(open(name + ".auto.json"))
problems = []
def close(what, a, b, rel=1e-9):
    if abs(a - b) > rel * max(abs(a), abs(b)):
        problems.append("%s: rbm_cpu eval %.17g, independent_eval.py %.17g" % (what, a, b))
if ours["log_z_method"] != "exact":
    problems.append("rbm_cpu eval did not compute log Z exactly: " + ours["log_z_method"])
for run, flag in ((theirs, "exact"), (auto, "auto")):
    if (run["method"], run["log_z_method"]) != (flag, "exact"):
        problems.append("--method %s: method %r, log_z_method %r, expected %r, 'exact'"
                        % (flag, run["method"], run["log_z_method"], flag))
    close("log Z, --method " + flag, ours["log_z"], run["log_z"])
    if not run["log_z_lo"] == run["log_z"] == run["log_z_hi"] or run["ais"] is not None:
        problems.append("--method %s: an interval or AIS numbers beside an exact log Z" % flag)
if theirs["unused_flags"] != [] or auto["unused_flags"] != ["--runs", "--seed"]:
    problems.append("unused AIS flags: %r with none given, %r with --runs, --seed"
                    % (theirs["unused_flags"], auto["unused_flags"]))
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
# refused_as NAME EXPECTED_LAST_LINE ARGS...: exit 2, nothing on stdout, that last line on stderr.
refused_as() {
  local name="$1" expected="$2"
  shift 2
  local out err code=0
  out="$("$python" "$script" "$@" 2>"$scratch/stderr")" || code=$?
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
# refused NAME EXPECTED_LAST_LINE ARGS...: the same with a short AIS (a refusal must not need one).
refused() {
  local name="$1" expected="$2"
  shift 2
  refused_as "$name" "$expected" --runs 2 --betas 3 "$@"
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
refused "too few --betas" "$prog --betas must be from 3 to 100000000" binary --betas 2
# Too many: refused as rbm_cpu eval refuses them (numpy's MemoryError had been a traceback).
refused "too many --betas" "$prog --betas must be from 3 to 100000000" binary --betas 10000000000000
refused "too many --runs" "$prog --runs must be from 2 to 10000000" binary --runs 100000000000
# Runs that pass the bounds but not this machine's memory: numpy's MemoryError is one line, exit 2
# (1e7 runs need 31 GB of (runs, 784) float32; the limit of 2 GB leaves numpy room to start).
printf '#!/usr/bin/env bash\nulimit -v 2000000\nexec timeout 120 %q "$@"\n' "$python" >limited_python
chmod +x limited_python
python="$scratch/limited_python" refused_as "AIS runs that do not fit the memory" \
  "error: out of memory: the AIS runs' states do not fit this machine's memory (fewer --runs)" \
  --method ais --runs 10000000 --betas 3 binary
refused "AIS flags with --method exact" \
  "$prog --runs, --betas set AIS, which --method exact does not run" binary --method exact
refused "--check with a MODEL_DIR" \
  "$prog --check scores its own models: it takes no MODEL_DIR and no --json" --check binary
# MNIST files that are not what they say: one line naming the file, exit 2 (not a traceback).
mkdir bad_mnist
printf 'notgzip' >bad_mnist/train-images-idx3-ubyte.gz
refused "an MNIST .gz that is not gzip" \
  "error: cannot read bad_mnist/train-images-idx3-ubyte.gz: Not a gzipped file (b'no')" \
  binary --mnist bad_mnist
gzip -c "$mnist/train-images-idx3-ubyte" >whole.gz
head -c 1000 whole.gz >bad_mnist/train-images-idx3-ubyte.gz
refused "a truncated MNIST .gz" \
  "error: cannot read bad_mnist/train-images-idx3-ubyte.gz: Compressed file ended before the end-of-stream marker was reached" \
  binary --mnist bad_mnist

# --method exact above the enumeration's limit: exit 2 and one line, before reading any images.
# The models are zeros written here: 21 binary and 13 ternary hidden units.
"$python" - <<'PY'
import json, os
import numpy as np
for name, H, hidden_type in (("big_binary", 21, "binary"), ("big_ternary", 13, "ternary")):
    os.mkdir(name)
    np.save(name + "/W.npy", np.zeros((784, H), dtype=np.float32))
    np.save(name + "/b.npy", np.zeros(H, dtype=np.float32))
    json.dump({"recipe": {"hidden_type": hidden_type}}, open(name + "/run.json", "w"))
PY
for big in "big_binary 21 binary 20 2" "big_ternary 13 ternary 12 3"; do
  read -r name H type limit base <<<"$big"
  expected="$prog --method exact: $name has H = $H $type hidden units; this script enumerates"
  expected+=" at most $limit ($base^$limit states; --method ais estimates log Z)"
  refused_as "--method exact on H = $H $type: refused" "$expected" --method exact "$name"
  [[ "$(wc -l <"$scratch/stderr")" == 1 ]] ||
    { echo "FAIL --method exact on H = $H $type: more than one line"; failures=$((failures + 1)); }
done

# --json through a symbolic link writes its target (as a shell's > does); the link stays a link.
# With --method ais, AIS runs on a model that auto would enumerate.
mkdir linked
echo "old content" >linked/target.json
ln -s linked/target.json link.json
if "$python" "$script" --method ais --runs 2 --betas 3 --json link.json binary >/dev/null &&
   [[ -L link.json && "$(readlink link.json)" == linked/target.json ]] &&
   "$python" -c 'import json, sys; r = json.load(open(sys.argv[1]))
assert (r["model"], r["log_z_method"], r["ais_runs"]) == ("binary", "ais", 2)' \
     linked/target.json; then
  echo "ok   --json through a symbolic link"
else
  echo "FAIL --json link.json: the link was replaced, or its target does not hold AIS's numbers"
  failures=$((failures + 1))
fi

# The report's log p(x) lines: the scored split's and the training split's, one of each; with
# --split train the scored split is the training split, said once (it was printed twice).
for split in test train; do
  lines="$("$python" "$script" --method exact --split "$split" binary |
    grep -cE '^  (test|train|all) +avg log p\(x\)')"
  want=$([[ "$split" == train ]] && echo 1 || echo 2)
  if [[ "$lines" != "$want" ]]; then
    echo "FAIL --split $split: $lines avg log p(x) lines, expected $want"
    failures=$((failures + 1))
  else
    echo "ok   --split $split: $want avg log p(x) line(s)"
  fi
done

# A stdout that cannot take the report: one line on stderr, not a traceback.
if [[ -c /dev/full && -w /dev/full ]]; then
  code=0
  err="$("$python" "$script" --runs 2 --betas 3 binary 2>&1 >/dev/full)" || code=$?
  expected="error: cannot write the report to stdout: No space left on device"
  if [[ "$code" != 2 || "$err" != "$expected" ]]; then
    echo "FAIL stdout to /dev/full"
    echo "  expected exit 2: $expected"
    echo "  got exit $code: $err"
    failures=$((failures + 1))
  else
    echo "ok   a full stdout"
  fi
else
  echo "skip a full stdout: no writable /dev/full"
fi

# Its numbers as rbm's reports write them (format_number): fixed below 1e9, else 9 significant
# digits (a diverged model's log Z, not 38 digits); NaN of either sign as nan.
formatted=$(cd "$repo/scripts" && "$python" -c '
import independent_eval as ie
print(ie.fixed(-479.1234567, 6), ie.fixed(-999999999.4, 2), ie.fixed(9.5401984203278509e37, 6),
      ie.fmt(float("-nan")), ie.fmt(float("-inf")), ie.fmt(-1.5e300))')
expected_formatted="-479.123457 -999999999.40 9.54019842e+37 nan -inf -1.5e+300"
if [[ "$formatted" != "$expected_formatted" ]]; then
  echo "FAIL number format: expected '$expected_formatted', got '$formatted'"
  failures=$((failures + 1))
else
  echo "ok   number format"
fi

if ((failures)); then
  echo "$failures failures"
  exit 1
fi
echo "all independent_eval.py checks passed"
