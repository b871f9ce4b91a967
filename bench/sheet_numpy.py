#!/usr/bin/python3
"""The course sheet's numpy RBM trainer, as a baseline for timing and quality.

This is the program a user of the course sheet would have: plain numpy, one training
image per iteration, 1-D vectors, CD-3. It shares no code with the project. It exists
to answer two questions about the project's trainers: how much faster are they than
this, and is the model they learn at least as good (see scripts/independent_eval.py).

Recipe (docs: /work/shared/design.md, "The reference recipe"):
  binarized MNIST digit 3 (pixel > 127.5), H = 100 hidden units, W ~ N(0, 0.1^2),
  b = 0, no visible bias, 25000 iterations, each on one uniformly drawn image, CD-3,
  learning rate 0.005. The gradient is the one in design.md:
      dW = x0 sigm(W'x0 + b)' - x3 sigm(W'x3 + b)'      db = sigm(W'x0 + b) - sigm(W'x3 + b)
  i.e. the negative phase uses the hidden probabilities of the 3rd sample (NOT the
  sheet's bug of reusing the data's hidden probabilities).

Only the training loop is timed (time.perf_counter). BLAS is pinned to one thread
(OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1) before numpy is imported, so that the
time is a single-core figure; pass --threads N to change that.

Output: one line `sheet_numpy iters N seconds S us_per_iter U`; with --out DIR also
DIR/W.npy (float32, (784, 100)) and DIR/b.npy (float32, (100,)).

Example:
  /usr/bin/python3 bench/sheet_numpy.py --split train --out /tmp/sheet_model
"""

import argparse
import gzip
import os
import struct
import sys


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    default_mnist = os.path.normpath(os.path.join(here, "..", "data", "mnist"))
    p = argparse.ArgumentParser(
        description="Course-sheet numpy RBM (CD-3, one image per iteration): "
                    "baseline timing and model.")
    p.add_argument("--mnist", default=default_mnist,
                   help="folder with the MNIST IDX files (raw or .gz) [%(default)s]")
    p.add_argument("--split", choices=["all", "train", "test"], default="train",
                   help="which threes to train on: train (6131), test (1010), "
                        "all (7141) [%(default)s]")
    p.add_argument("--digit", type=int, default=3, help="digit to keep [%(default)s]")
    p.add_argument("--iters", type=int, default=25000,
                   help="training iterations [%(default)s]")
    p.add_argument("--hidden", type=int, default=100, help="hidden units [%(default)s]")
    p.add_argument("--cd", type=int, default=3, help="Gibbs steps k of CD-k [%(default)s]")
    p.add_argument("--lr", type=float, default=0.005, help="learning rate [%(default)s]")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of np.random.default_rng [%(default)s]")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads (set before numpy loads) [%(default)s]")
    p.add_argument("--out", default=None,
                   help="folder to write W.npy and b.npy (float32) into")
    return p.parse_args()


# ---------------------------------------------------------------------------- data

def find_idx(folder, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    sys.exit("error: MNIST file %s (or %s.gz) not found in %s (fetch it with "
             "scripts/fetch_mnist, or pass --mnist DIR)" % (stem, stem, folder))


def read_idx(path, np):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        sys.exit("error: %s is not an unsigned-byte IDX file" % path)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    count = 1
    for d in dims:
        count *= d
    data = np.frombuffer(raw, dtype=np.uint8, count=count, offset=4 + 4 * ndim)
    if data.size != count:
        sys.exit("error: %s is truncated" % path)
    return data.reshape(dims)


def load_digit(folder, split, digit, np):
    parts = {"train": [("train-images-idx3-ubyte", "train-labels-idx1-ubyte")],
             "test": [("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]}
    parts["all"] = parts["train"] + parts["test"]
    out = []
    for img_stem, lab_stem in parts[split]:
        images = read_idx(find_idx(folder, img_stem), np)
        labels = read_idx(find_idx(folder, lab_stem), np)
        if images.shape[0] != labels.shape[0]:
            sys.exit("error: %s and %s disagree on the number of items"
                     % (img_stem, lab_stem))
        keep = images[labels == digit].reshape(-1, images.shape[1] * images.shape[2])
        out.append((keep > 127.5).astype(np.float64))
    return np.concatenate(out, axis=0)


# ---------------------------------------------------------------------------- main

def main():
    args = parse_args()
    # Pin BLAS threads before numpy is imported (the timing is single-core by default).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import time
    import numpy as np

    X = load_digit(args.mnist, args.split, args.digit, np)
    n, d = X.shape
    if n == 0:
        sys.exit("error: no images of digit %d in split %s" % (args.digit, args.split))
    H = args.hidden
    rng = np.random.default_rng(args.seed)

    W = rng.normal(0.0, 0.1, size=(d, H))
    b = np.zeros(H)

    def sigmoid(t):
        # stable: tanh never overflows
        return 0.5 * (1.0 + np.tanh(0.5 * t))

    lr = args.lr
    k = args.cd

    t0 = time.perf_counter()
    for _ in range(args.iters):
        x0 = X[rng.integers(n)]
        ph0 = sigmoid(x0 @ W + b)
        ph = ph0
        for _step in range(k):
            h = (rng.random(H) < ph).astype(np.float64)
            px = sigmoid(W @ h)
            x = (rng.random(d) < px).astype(np.float64)
            ph = sigmoid(x @ W + b)
        # negative phase: hidden probabilities of the k-th sample x
        W += lr * (np.outer(x0, ph0) - np.outer(x, ph))
        b += lr * (ph0 - ph)
    seconds = time.perf_counter() - t0

    print("sheet_numpy iters %d seconds %.3f us_per_iter %.2f"
          % (args.iters, seconds, 1e6 * seconds / max(args.iters, 1)))

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        np.save(os.path.join(args.out, "W.npy"), W.astype(np.float32))
        np.save(os.path.join(args.out, "b.npy"), b.astype(np.float32))


if __name__ == "__main__":
    main()
