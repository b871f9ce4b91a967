#!/usr/bin/env bash
# Tests scripts/run's choice of trainer and its arguments, without building or training: a copy
# of scripts/run in a scratch repository whose scripts/setup only prints a line (as the real one
# prints its build's), and a build directory whose rbm_cpu and rbm_cuda are stand-ins that print
# their arguments and working directory. Stdout and stderr are compared apart: stdout must be the
# trainer's alone (scripts/run eval DIR --json | python3 -m json.tool).
# Usage: test_run_script.sh REPO (the source tree, for scripts/run itself).
set -euo pipefail

source_repo="$1"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
repo="$scratch/repo"
build="$scratch/build"
mkdir -p "$repo/scripts" "$build" "$scratch/caller"
cp "$source_repo/scripts/run" "$repo/scripts/run"
printf '#!/usr/bin/env bash\necho "setup ran" >>"%s/setup.log"\necho "setup: built (stand-in)"\n' \
  "$scratch" >"$repo/scripts/setup"

# A trainer stand-in: one line per argument, then "pwd=<its working directory>".
stand_in() {
  cat >"$build/$1" <<STANDIN
#!/usr/bin/env bash
if [[ "\${1:-}" == --device-info ]]; then
  if [[ -f "$scratch/device" ]]; then cat "$scratch/device"; exit 0; fi
  echo "$1: no CUDA device (stand-in)" >&2; exit 2
fi
echo "trainer=$1"
for arg in "\$@"; do echo "arg=\$arg"; done
echo "pwd=\$(pwd)"
STANDIN
  chmod +x "$build/$1"
}
stand_in rbm_cpu
stand_in rbm_cuda
chmod +x "$repo/scripts/run" "$repo/scripts/setup"

failures=0 calls=0
# check NAME EXPECTED_OUTPUT ARGS...: runs scripts/run from $scratch/caller and compares its
# whole output: its stderr, each line prefixed "stderr: ", then its stdout, then its exit code
# ("exit=N").
check() {
  local name="$1" expected="$2"
  shift 2
  local actual code=0
  calls=$((calls + 1))
  (cd "$scratch/caller" && RBM_BUILD_DIR="$build" "$repo/scripts/run" "$@") \
    >"$scratch/out" 2>"$scratch/err" || code=$?
  actual="$(sed 's/^/stderr: /' "$scratch/err"; cat "$scratch/out")
exit=$code"
  if [[ "$actual" != "$expected" ]]; then
    echo "FAIL $name: scripts/run $*"
    diff <(echo "$expected") <(echo "$actual") || true
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

setup="stderr: setup: built (stand-in)"
fallback="$setup
stderr: run: no CUDA device (stand-in); falling back to rbm_cpu"
caller="$scratch/caller"
# ran TRAINER ARGS...: what a stand-in prints when run with ARGS from the caller's directory, and
# scripts/run's exit code 0.
ran() {
  echo "trainer=$1"
  shift
  for arg in "$@"; do echo "arg=$arg"; done
  echo "pwd=$caller"
  echo "exit=0"
}
# No --out: the trainer's default runs/<timestamp> takes runs/<timestamp>-2 when another run
# started in the same second, where one chosen by scripts/run would collide.
new_run=(--data "$repo/data/mnist")

check "new run gets the fetched MNIST and no --out, in the caller's directory" \
  "$fallback
$(ran rbm_cpu "${new_run[@]}" --iters 5)" --iters 5

check "train is the default command and is dropped" \
  "$fallback
$(ran rbm_cpu "${new_run[@]}" --k 1)" train --k 1

for command in train eval sample mosaic; do
  check "'train $command' is passed on as written, for the trainer to refuse" \
    "$fallback
$(ran rbm_cpu train "$command" old)" train "$command" old
done

check "the user's --out and --data are kept, relative" \
  "$fallback
$(ran rbm_cpu --out mine --data ../images)" --out mine --data ../images

check "--out= and --data= forms count too" \
  "$fallback
$(ran rbm_cpu --data=../images --out=mine)" --data=../images --out=mine

check "a flag missing its value at the end stays at the end" \
  "$fallback
$(ran rbm_cpu "${new_run[@]}" --iters)" --iters

for flags in "--resume old" "--resume=old" "--help" "-h" "--version" "eval old" \
             "sample old --count 4" "mosaic old --out m.png"; do
  # shellcheck disable=SC2086
  check "'$flags' gets no --data" "$fallback
$(ran rbm_cpu $flags)" $flags
done
check "--device-info gets no --data, and the trainer's answer" "$fallback
stderr: rbm_cpu: no CUDA device (stand-in)
exit=2" --device-info

echo "NVIDIA H200 (stand-in)" >"$scratch/device"
check "rbm_cuda trains when its --device-info succeeds" \
  "$setup
stderr: run: using rbm_cuda on NVIDIA H200 (stand-in)
$(ran rbm_cuda "${new_run[@]}")"

rm "$build/rbm_cuda"
check "rbm_cpu trains, silently, in a build without rbm_cuda" \
  "$setup
$(ran rbm_cpu --out mine --data x)" --out mine --data x

setup_runs=$(wc -l <"$scratch/setup.log")
if [[ "$setup_runs" -ne "$calls" ]]; then
  echo "FAIL scripts/setup ran $setup_runs times for $calls calls of scripts/run"
  failures=$((failures + 1))
fi

if ((failures)); then
  echo "$failures failures"
  exit 1
fi
echo "all scripts/run checks passed"
