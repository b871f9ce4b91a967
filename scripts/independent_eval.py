#!/usr/bin/python3
"""Independent evaluation of trained RBMs: log Z (exact or AIS), test log-likelihood, exact PLL.

This script shares no code with the project (numpy only). It is a second opinion on the
project's `eval` command and the yardstick for comparing models (e.g. the project's
against bench/sheet_numpy.py's). For each MODEL_DIR holding W.npy (d x H), b.npy (H,)
and optionally a.npy (d,) and run.json it reports:

  * log Z exactly, as log sum over h of b'h + sum_i softplus(a_i + W_i h), by enumerating
    the 2^H (3^H ternary) hidden states, for H <= 20 binary or H <= 12 ternary units
    (--method auto, the default, or exact). The limits are time: 2^20 states x 784
    pixels take about 3.5 s on two cores (up to 10 s on busy ones); each unit more doubles
    that.
    `eval` enumerates up to H = 24 (ternary 15) in C++ on all cores. Then the average
    log p(x) below is exact too, with no interval. AIS's flags (--runs, --betas, --base,
    --seed) are refused with --method exact and reported unused under auto, as eval does;
  * otherwise (--method ais, or auto above those H) log Z by Annealed Importance
    Sampling (Salakhutdinov & Murray 2008, "On the quantitative analysis of deep belief
    networks"), from a base-rate model whose visible biases are the log-odds of the
    training images' pixel means, with the 3-standard-deviation interval
    log(mean(w) +- 3 std(w) / sqrt(M));
    and (default --base both) a second AIS from the uniform base model, keeping the
    larger log Z. Why: an RBM without (or with weak) visible biases has a mode of
    uniform-noise images at h = 0 worth at least 2^d in Z (log Z >= d log 2 = 543.4
    for d = 784); AIS from the base-rate model starts among digits and misses that
    mode (see --check: -4 to -11 nats on trained H = 10 models), while the uniform
    start misses digit modes of models with strong visible biases. The exact lower
    bound log Z >= log sum over h in {0, e_1..e_H} of p*(h) is printed as well;
  * the average log p(x) = mean(-F(x)) - log Z over the held-out images (default: the
    1010 threes of t10k), with the interval carried over from an AIS log Z;
  * the exact average pseudo-log-likelihood sum_i log p(x_i | x_-i) per image.

The model (as in /work/shared/design.md):
    p(x, h) = exp(x'Wh + b'h + a'x) / Z,   F(x) = -a'x - sum_j softplus(w_j'x + b_j),
with binary hidden units h in {0,1}^H; with ternary ones (run.json's recipe.hidden_type
"ternary"), h in {-1,0,1}^H and softplus(t) = log(1 + e^t) becomes log(1 + 2 cosh t), the
log of the sum over h_j of exp(h_j t), everywhere below (free energy, PLL, AIS, log Z).

Which images: those of run.json's data.digit (0..9 or "all") unless --digit is given, else
threes; from --mnist, else from run.json's data.dir when it exists, else data/mnist. The
report's "data" line says which digit, split and folder were scored.

`--check` validates the enumeration against a sum over (x, h) on a 9 x 6 model, the AIS
code on H = 10 models whose log Z is computed exactly by enumerating the 2^10 (3^10 for
ternary units) hidden states, and the PLL code against a direct computation.

Examples:
  /usr/bin/python3 scripts/independent_eval.py /tmp/sheet_model
  /usr/bin/python3 scripts/independent_eval.py --method exact --json h12.json /tmp/h12
  /usr/bin/python3 scripts/independent_eval.py run1 run2 --runs 100 --betas 14500 --json out.json
  /usr/bin/python3 scripts/independent_eval.py --check
"""

import argparse
import gzip
import json
import math
import os
import stat
import struct
import sys
import time
import zlib

# The GEMMs here are small (100 x 784 x 100): one BLAS thread is faster than several,
# markedly so on a busy machine. Set OPENBLAS_NUM_THREADS yourself to override.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def exit_error(message):
    """Bad input or an output that cannot be written: one line on stderr ("error: ..."), and
    exit code 2, the rbm programs' and scripts/plot's for these."""
    sys.stderr.write("error: %s\n" % message)
    sys.exit(2)


try:
    import numpy as np
except ImportError:
    exit_error("numpy is missing; run this with Debian's /usr/bin/python3 "
              "(python3-numpy)")


# ---------------------------------------------------------------------------- data

def find_idx(folder, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    exit_error("MNIST file %s (or %s.gz) not found in %s (fetch it with "
              "scripts/fetch_mnist, or pass --mnist DIR)" % (stem, stem, folder))


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        # Unreadable, not gzip, or cut short: the file and the reason, exit 2 (gzip's errors name
        # no file, and a truncated stream is an EOFError).
        exit_error("cannot read %s: %s" % (path, e or type(e).__name__))
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        exit_error("%s is not an unsigned-byte IDX file" % path)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    count = int(np.prod(dims))
    if len(raw) < 4 + 4 * ndim + count:
        exit_error("%s is truncated" % path)
    data = np.frombuffer(raw, dtype=np.uint8, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_digit(folder, split, digit):
    """Binarized (pixel > 127.5) images of one digit (or "all"), float64 (n, 784)."""
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    parts = ["train", "test"] if split == "all" else [split]
    out = []
    for part in parts:
        img_stem, lab_stem = stems[part]
        images = read_idx(find_idx(folder, img_stem))
        labels = read_idx(find_idx(folder, lab_stem))
        if images.shape[0] != labels.shape[0]:
            exit_error("%s and %s disagree on the number of items"
                      % (img_stem, lab_stem))
        chosen = images if digit == "all" else images[labels == digit]
        keep = chosen.reshape(-1, images.shape[1] * images.shape[2])
        out.append((keep > 127.5).astype(np.float64))
    X = np.concatenate(out, axis=0)
    if X.shape[0] == 0:
        exit_error("no images of digit %s in split %s" % (digit, split))
    return X


def load_model(folder):
    if not os.path.isdir(folder):
        exit_error("model folder %s does not exist" % folder)
    def get(name, required):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            if required:
                exit_error("%s not found (a model folder holds W.npy, b.npy "
                          "and optionally a.npy)" % path)
            return None
        try:
            return np.load(path).astype(np.float64)
        except Exception as e:  # noqa: BLE001 - report any unreadable file plainly
            exit_error("cannot read %s: %s" % (path, e))
    W = get("W.npy", True)
    b = get("b.npy", True)
    a = get("a.npy", False)
    if W.ndim != 2:
        exit_error("%s/W.npy has shape %s, expected (d, H)" % (folder, W.shape))
    d, H = W.shape
    if b.shape != (H,):
        exit_error("%s/b.npy has shape %s, expected (%d,)" % (folder, b.shape, H))
    if a is not None and a.shape != (d,):
        exit_error("%s/a.npy has shape %s, expected (%d,)" % (folder, a.shape, d))
    for name, v in (("W", W), ("b", b), ("a", a)):
        if v is not None and not np.all(np.isfinite(v)):
            exit_error("%s/%s.npy holds non-finite values" % (folder, name))
    return W, b, a


def load_run_json(folder):
    """(hidden type, digit or None, data folder or None, split or None) from folder/run.json;
    without run.json, binary units and nothing recorded (a bare model folder, e.g.
    sheet_numpy.py's).
    A hidden type other than binary or ternary is refused: scoring it as either would give
    wrong numbers without a word."""
    path = os.path.join(folder, "run.json")
    if not os.path.isfile(path):
        return "binary", None, None, None
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, ValueError) as e:
        exit_error("cannot read %s: %s" % (path, e))
    recipe = run.get("recipe") if isinstance(run, dict) else None
    data = run.get("data") if isinstance(run, dict) else None
    recipe = recipe if isinstance(recipe, dict) else {}
    data = data if isinstance(data, dict) else {}
    hidden_type = recipe.get("hidden_type", "binary")
    if hidden_type not in ("binary", "ternary"):
        exit_error("%s: recipe.hidden_type %s is neither binary nor ternary; this "
                  "script scores only those" % (path, json.dumps(hidden_type)))
    digit = data.get("digit")
    if not (digit == "all" or (isinstance(digit, int) and not isinstance(digit, bool)
                               and 0 <= digit <= 9)):
        digit = None
    data_dir = data.get("dir")
    if not isinstance(data_dir, str) or not os.path.isdir(data_dir):
        data_dir = None
    split = data.get("split")
    if split not in ("train", "test", "all"):
        split = None
    return hidden_type, digit, data_dir, split


# ---------------------------------------------------------------------------- math

def softplus(t):
    """log(1 + exp(t)), stable for any t."""
    return np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))


def log1p2cosh(t):
    """log(1 + 2 cosh t) = |t| + log1p(e + e^2), e = exp(-|t|): no overflow at any t."""
    m = np.abs(t)
    e = np.exp(-m)
    return m + np.log1p(e + e * e)


def hidden_log_sum(t, ternary):
    """log of the sum over one hidden unit's values v of exp(v t): softplus(t) for v in
    {0, 1}, log(1 + 2 cosh t) for v in {-1, 0, 1}."""
    return log1p2cosh(t) if ternary else softplus(t)


def sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def sigmoid32(t):
    """Fast float32 sigmoid for sampling: 1 / (1 + exp(-t)); exp may overflow to inf,
    which correctly gives 0."""
    with np.errstate(over="ignore"):
        e = np.exp(-t)
    e += 1.0
    return np.reciprocal(e, out=e)


def logsumexp(v):
    m = np.max(v)
    return m + math.log(np.sum(np.exp(v - m)))


def neg_free_energy(X, W, b, a, ternary=False):
    """-F(x) = a'x + sum_j softplus(w_j'x + b_j), one per row of X (log(1 + 2 cosh) for
    ternary units)."""
    out = hidden_log_sum(X @ W + b, ternary).sum(axis=1)
    if a is not None:
        out += X @ a
    return out


def base_rate_biases(Xtrain):
    """Log-odds of the smoothed pixel means: p = (count + 0.05) / (n + 0.1)."""
    n = Xtrain.shape[0]
    p = (Xtrain.sum(axis=0) + 0.05) / (n + 0.1)
    return np.log(p) - np.log1p(-p)


def beta_schedule(n_betas):
    """n_betas + 1 inverse temperatures from 0 to 1, i.e. n_betas AIS steps.

    For 14500: 500 uniformly spaced in [0, 0.5), 4000 in [0.5, 0.9), 10000 in
    [0.9, 1.0] (plus the final 1.0); other counts are scaled proportionally.
    """
    if n_betas < 3:
        exit_error("--betas must be at least 3")
    n1 = max(1, int(round(n_betas * 500 / 14500)))
    n2 = max(1, int(round(n_betas * 4000 / 14500)))
    n3 = max(1, n_betas - n1 - n2)
    return np.concatenate([np.linspace(0.0, 0.5, n1, endpoint=False),
                           np.linspace(0.5, 0.9, n2, endpoint=False),
                           np.linspace(0.9, 1.0, n3 + 1)])


def ais_log_z(W, b, a, aA, betas, runs, rng, ternary=False):
    """AIS estimate of log Z for the RBM (W, b, a) from the base-rate model aA.

    Intermediate distributions (unnormalized, hidden units summed out), k = 0..K:
        p_k*(x) = exp((1 - beta_k) aA'x + beta_k a'x) * prod_j (1 + exp(beta_k (w_j'x + b_j)))
    which is the marginal of the joint
        p_k*(x, h) = exp((1 - beta_k) aA'x + beta_k (a'x + x'Wh + b'h)).

    Base model (beta_0 = 0): p_0*(x, h) = exp(aA'x) for every h in {0,1}^H, i.e. the
    visible units are independent Bernoulli(sigm(aA_i)) and the hidden units are
    independent fair coins, unconnected to x. Its partition function is
        Z_0 = sum_x sum_h exp(aA'x) = [prod_i (1 + exp(aA_i))] * 2^H,
        log Z_A = sum_i softplus(aA_i) + H log 2.
    This is consistent with p_0*(x) above: prod_j (1 + exp(0)) = 2^H. At beta_K = 1,
    p_K* is the RBM's own unnormalized marginal exp(-F(x)), so Z_K = Z.

    Ternary units (h in {-1,0,1}^H): 1 + exp(t) becomes 1 + 2 cosh t, 2^H becomes 3^H
    (log Z_A = sum_i softplus(aA_i) + H log 3), and h_j is drawn with
        p_k(h_j = v | x) = exp(v t) / (1 + 2 cosh t),  t = beta_k (w_j'x + b_j).

    x_1 ~ p_0 exactly; for k = 1..K: log w += log p_k*(x_k) - log p_{k-1}*(x_k), then
    x_{k+1} ~ T_k(x_k), one Gibbs sweep h ~ p_k(h | x), x ~ p_k(x | h), which leaves
    p_k invariant:
        p_k(h_j = 1 | x) = sigm(beta_k (w_j'x + b_j))
        p_k(x_i = 1 | h) = sigm((1 - beta_k) aA_i + beta_k (a_i + W_i h))
    Then Z / Z_0 ~= mean(w). Returns (log Z_A, log w per run) in float64.

    Precision: the chains (GEMMs, sigmoids, uniforms) run in float32, which halves
    the time; the stored models are float32 anyway and x, h are exact 0/1. Each
    weight increment is computed in float64 from the float32 u = W'x + b (an error of
    ~1e-6 in u moves softplus(beta_k u) - softplus(beta_{k-1} u) by ~1e-6 times
    beta_k - beta_{k-1}), and log w is accumulated in float64; --check validates this.
    """
    d, H = W.shape
    f32 = np.float32
    a_ = np.zeros(d) if a is None else a
    da = a_ - aA                    # (beta_k - beta_{k-1}) * da'x: visible part of the ratio
    W32 = W.astype(f32)
    WT32 = np.ascontiguousarray(W32.T)
    b32, a32, aA32 = b.astype(f32), a_.astype(f32), aA.astype(f32)
    log_za = float(softplus(aA).sum() + H * math.log(3.0 if ternary else 2.0))

    x = (rng.random((runs, d), dtype=f32) < sigmoid32(aA32)).astype(f32)
    logw = np.zeros(runs, dtype=np.float64)
    K = len(betas) - 1
    for k in range(1, K + 1):
        bk, bp = float(betas[k]), float(betas[k - 1])
        u32 = x @ W32
        u32 += b32
        u = u32.astype(np.float64)
        logw += (bk - bp) * (x.astype(np.float64) @ da)
        logw += (hidden_log_sum(bk * u, ternary) - hidden_log_sum(bp * u, ternary)).sum(axis=1)
        if k == K:
            break
        u32 *= f32(bk)
        if ternary:
            h = ternary_draw(u32, rng.random((runs, H), dtype=f32))
        else:
            h = (rng.random((runs, H), dtype=f32) < sigmoid32(u32)).astype(f32)
        t = h @ WT32
        t += a32
        t *= f32(bk)
        t += f32(1.0 - bk) * aA32
        x = (rng.random((runs, d), dtype=f32) < sigmoid32(t)).astype(f32)
    return log_za, logw


def ternary_draw(t, r):
    """h in {-1, 0, 1} with p(v) = exp(v t) / (1 + 2 cosh t), from uniforms r (float32).
    With s = +1 for t >= 0, else -1, and e = exp(-|t|): p(s) = 1 / (1 + e + e^2),
    p(0) = e / (1 + e + e^2), p(-s) = e^2 / (1 + e + e^2); at t = 0 each is 1/3."""
    e = np.exp(-np.abs(t))
    norm = 1.0 + e + e * e
    s = np.where(t >= 0, np.float32(1.0), np.float32(-1.0))
    return np.where(r * norm < 1.0, s, np.where(r * norm < 1.0 + e, np.float32(0.0), -s))


def summarize_ais(log_za, logw):
    """log Z = log Z_A + log mean(w), with log(mean(w) -+ 3 std(w) / sqrt(M))."""
    M = logw.size
    m0 = np.max(logw)
    w = np.exp(logw - m0)
    mean = w.mean()
    std = w.std(ddof=1) if M > 1 else 0.0
    half = 3.0 * std / math.sqrt(M)
    log_z = log_za + m0 + math.log(mean)
    hi = log_za + m0 + math.log(mean + half)
    lo = log_za + m0 + math.log(mean - half) if mean - half > 0 else -math.inf
    ess = float(w.sum() ** 2 / np.sum(w * w))
    return log_z, lo, hi, ess


# The most hidden units whose states the exact log Z enumerates: 2^20 binary states took 6 to
# 10 s on the development machine (two cores at a load of 6, one BLAS thread: 2^H x d = 8.2e8
# softplus terms), 3^12 = 531441 ternary ones 3 s. One unit more doubles (triples) the time,
# and AIS's default 100 runs x 14500 betas take minutes whatever H.
EXACT_MAX_H = {False: 20, True: 12}


def hidden_states(H, ternary, start=0, stop=None):
    """Hidden states number start..stop-1 (all 2^H binary or 3^H ternary states by default) as
    rows, float64: state n's unit j is digit j of n in base 2 (or 3, minus 1)."""
    base = 3 if ternary else 2
    stop = base ** H if stop is None else stop
    n = np.arange(start, stop)[:, None] // (base ** np.arange(H))[None, :] % base
    return (n - 1 if ternary else n).astype(np.float64)


def exact_log_z_by_hidden(W, b, a, ternary=False):
    """log Z = logsumexp over h in {0,1}^H (or {-1,0,1}^H) of b'h + sum_i softplus(a_i + W_i h),
    in blocks of 1024 states made one at a time (all 2^20 states at once would take 170 MB, their
    (states, d) matrix 6.6 GB), softplus in place: three times faster than with its temporaries.
    H above EXACT_MAX_H is refused (ValueError): its time would be minutes to hours."""
    d, H = W.shape
    if H > EXACT_MAX_H[ternary]:
        raise ValueError("H too large to enumerate")
    a_ = np.zeros(d) if a is None else a
    WT = np.ascontiguousarray(W.T)
    total = (3 if ternary else 2) ** H
    vals = np.empty(total)
    for start in range(0, total, 1024):
        hs = hidden_states(H, ternary, start, min(total, start + 1024))
        T = hs @ WT
        T += a_
        # softplus(T) = max(T, 0) + log1p(exp(-|T|)), as softplus() computes it
        m = np.maximum(T, 0.0)
        np.abs(T, out=T)
        np.negative(T, out=T)
        np.exp(T, out=T)
        np.log1p(T, out=T)
        T += m
        vals[start:start + hs.shape[0]] = hs @ b + T.sum(axis=1)
    return logsumexp(vals)


def log_z_lower_bound(W, b, a, ternary=False):
    """A deterministic lower bound on log Z: the hidden states h = 0 and h = e_j only
    (and h = -e_j for ternary units).

    Z = sum_h exp(b'h) prod_i (1 + exp(a_i + W_i h)) >= the sum over any subset of h.
    The h = 0 term alone is prod_i (1 + exp(a_i)), i.e. d log 2 without visible biases:
    an RBM without visible biases puts mass 2^d exp(0) / Z on uniform-noise images
    through h = 0, and AIS from the base-rate model can miss that mode entirely.
    """
    d, H = W.shape
    a_ = np.zeros(d) if a is None else a
    parts = [[softplus(a_).sum()], b + softplus(W + a_[:, None]).sum(axis=0)]
    if ternary:
        parts.append(-b + softplus(a_[:, None] - W).sum(axis=0))
    vals = np.concatenate(parts)
    return logsumexp(vals), float(vals[0])


def pseudo_log_likelihood(X, W, b, a, batch=32, ternary=False):
    """Exact sum_i log p(x_i | x_-i) for each row of X.

    Flipping pixel i (s_i = 1 - 2 x_i) changes -F by
        D_i = s_i a_i + sum_j [softplus(u_j + s_i W_ij) - softplus(u_j)],  u = W'x + b,
    (log(1 + 2 cosh) for ternary units)
    and log p(x_i | x_-i) = -F(x) - logaddexp(-F(x), -F(x^flip_i)) = -softplus(D_i).
    """
    n, d = X.shape
    out = np.empty(n)
    for s0 in range(0, n, batch):
        Xb = X[s0:s0 + batch]
        U = Xb @ W + b                          # (m, H)
        S = 1.0 - 2.0 * Xb                      # (m, d)
        T = U[:, None, :] + S[:, :, None] * W[None, :, :]    # (m, d, H)
        D = (hidden_log_sum(T, ternary).sum(axis=2)
             - hidden_log_sum(U, ternary).sum(axis=1)[:, None])
        if a is not None:
            D += S * a
        out[s0:s0 + batch] = -softplus(D).sum(axis=1)
    return out


BASES = ("base-rate", "uniform")


def ais_all_bases(W, b, a, aA, args, rng, ternary=False):
    """AIS from each base model in args.base; the estimate is the largest log Z.

    Each AIS run gives an unbiased estimate of Z, so log Zhat is a stochastic lower
    bound: P(log Zhat > log Z + t) <= exp(-t). Its failure mode is a missed mode
    (too small a log Z, too good a log p(x)). The base-rate path (Salakhutdinov &
    Murray) starts among digit-like images; the uniform path (aA = 0) starts among noise
    and finds the h = 0 noise mode of a model without (or with weak) visible biases.
    Taking the larger of the two keeps the stochastic bound: P(max > log Z + t) <=
    2 exp(-t); the reported log p(x) is then the more conservative one.
    """
    betas = beta_schedule(args.betas)
    names = BASES if args.base == "both" else (args.base,)
    per = {}
    for name in names:
        base = aA if name == "base-rate" else np.zeros_like(aA)
        t0 = time.perf_counter()
        log_za, logw = ais_log_z(W, b, a, base, betas, args.runs, rng, ternary)
        secs = time.perf_counter() - t0
        log_z, lo, hi, ess = summarize_ais(log_za, logw)
        per[name] = {"log_z_base": log_za, "log_z": log_z, "log_z_lo": lo,
                     "log_z_hi": hi, "ess": ess, "seconds": secs}
    best = max(per, key=lambda k: per[k]["log_z"])
    return best, per


# ---------------------------------------------------------------------------- report

def log_z_method(H, ternary, method):
    """"exact" or "ais": what --method asks for, auto being exact up to EXACT_MAX_H."""
    if method == "auto":
        return "exact" if H <= EXACT_MAX_H[ternary] else "ais"
    return method


def evaluate(name, W, b, a, ternary, data, args, rng):
    """data: the images to score and their base rates, as main's images_for gives them."""
    d, H = W.shape
    Xtest, Xtrain, aA = data["test"], data["train"], data["base_rates"]
    method = log_z_method(H, ternary, args.method)
    bound, bound_h0 = log_z_lower_bound(W, b, a, ternary)
    t0 = time.perf_counter()
    if method == "exact":
        # Not raised to the bound: the enumeration sums the bound's terms and more, in another
        # order, so it could land an ulp below it.
        best, per, log_z_ais = None, None, None
        log_z = lo = hi = exact_log_z_by_hidden(W, b, a, ternary)
    else:
        best, per = ais_all_bases(W, b, a, aA, args, rng, ternary)
        chosen = per[best]
        log_z_ais = chosen["log_z"]
        # log Z >= bound holds exactly, so an estimate below it is raised to it (this happens
        # within the noise when Z is the h = 0 mode's 2^d and little else).
        log_z = max(chosen["log_z"], bound)
        lo, hi = max(chosen["log_z_lo"], bound), max(chosen["log_z_hi"], bound)
    log_z_s = time.perf_counter() - t0
    # The AIS flags given go unused where log Z is exact (--method auto; exact refuses them).
    unused = [flag for flag in AIS_FLAGS if method == "exact" and flag in args.given]

    nf_test = neg_free_energy(Xtest, W, b, a, ternary).mean()
    nf_train = neg_free_energy(Xtrain, W, b, a, ternary).mean()
    t1 = time.perf_counter()
    pll = pseudo_log_likelihood(Xtest, W, b, a, ternary=ternary)
    pll_s = time.perf_counter() - t1
    pA = 1.0 / (1.0 + np.exp(-aA))
    base_rate_test = float((Xtest @ np.log(pA) + (1.0 - Xtest) @ np.log1p(-pA)).mean())

    res = {
        "model": name, "d": d, "H": H, "visible_bias": a is not None,
        "hidden_type": "ternary" if ternary else "binary",
        "digit": data["digit"], "digit_from": data["digit_from"], "mnist": data["mnist"],
        "split": args.split, "n_test": int(Xtest.shape[0]),
        "scored_images_overlap_training": data["trained_on_some"],
        "trained_on": data.get("trained_on"),
        "n_train_base_rate": int(Xtrain.shape[0]),
        "method": args.method, "log_z_method": method, "log_z_seconds": log_z_s,
        "log_z_states": "%d^%d" % (3 if ternary else 2, H) if method == "exact" else None,
        "unused_flags": unused,
        "ais_runs": args.runs if per else None, "ais_betas": args.betas if per else None,
        "seed": args.seed if per else None,
        "ais": per, "ais_chosen_base": best,
        "log_z_ais": log_z_ais, "log_z": log_z, "log_z_lo": lo, "log_z_hi": hi,
        "log_z_lower_bound": bound, "log_z_lower_bound_h0": bound_h0,
        "test_avg_log_p": nf_test - log_z,
        "test_avg_log_p_lo": nf_test - hi, "test_avg_log_p_hi": nf_test - lo,
        "test_avg_log_p_upper_bound": nf_test - bound,
        "train_avg_log_p": nf_train - log_z,
        "test_avg_neg_free_energy": nf_test,
        "test_avg_pll": float(pll.mean()), "test_avg_pll_per_pixel": float(pll.mean() / d),
        "pll_seconds": pll_s,
        "base_rate_model_test_avg_log_p": base_rate_test,
    }
    print_block(res)
    return res


def fixed(v, decimals):
    """v with `decimals` decimals while |v| < 1e9, else 9 significant digits (a diverged model's
    log Z can reach 1e38: "9.54019842e+37", not 38 digits); -inf, inf and nan as such: the rules
    of rbm's own reports (format_number, host/metrics.hpp)."""
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("-inf" if v < 0 else "inf")
    return "%.*f" % (decimals, v) if abs(v) < 1e9 else "%.9g" % v


def fmt(v):
    return fixed(v, 3)


def print_block(r):
    print("model %s  (d=%d, H=%d %s hidden units, visible bias: %s)"
          % (r["model"], r["d"], r["H"], r["hidden_type"], "yes" if r["visible_bias"] else "no"))
    print("  data        digit %s (%s), split %s, in %s: %d scored images; base rates from "
          "%d training images" % (r["digit"], r["digit_from"], r["split"], r["mnist"],
                                  r["n_test"], r["n_train_base_rate"]))
    if r["scored_images_overlap_training"]:
        print("  note        some or all of the scored images were the model's training images "
              "(run.json: %s): not a held-out score" % r["trained_on"])
    if r["log_z_method"] == "exact":
        print("  log Z       %s  exact, by enumerating the %s hidden states (%s), %.1f s"
              % (fixed(r["log_z"], 6), r["log_z_states"],
                 "--method exact" if r["method"] == "exact" else
                 "--method auto: H <= %d" % EXACT_MAX_H[r["hidden_type"] == "ternary"],
                 r["log_z_seconds"]))
    else:
        for name, v in r["ais"].items():
            print("  AIS %-9s %d runs x %d betas, seed %d: log Z %s  (3 sd: [%s, %s])  "
                  "ESS %.1f  %.1f s"
                  % (name, r["ais_runs"], r["ais_betas"], r["seed"], fmt(v["log_z"]),
                     fmt(v["log_z_lo"]), fmt(v["log_z_hi"]), v["ess"], v["seconds"]))
        print("  log Z       %s  (3 sd: [%s, %s]; AIS from the %s base %s, raised to the "
              "exact lower bound where below it)"
              % (fmt(r["log_z"]), fmt(r["log_z_lo"]), fmt(r["log_z_hi"]), r["ais_chosen_base"],
                 fmt(r["log_z_ais"])))
    print("  log Z bound %s exact lower bound (h in {0, e_j}, -e_j too if ternary); the h = 0 "
          "term alone %s"
          % (fmt(r["log_z_lower_bound"]), fmt(r["log_z_lower_bound_h0"])))
    if r["unused_flags"]:
        print("  note        %s not used: log Z is exact for this model (--method ais forces "
              "AIS)" % ", ".join(r["unused_flags"]))
    if r["log_z_method"] == "exact":
        print("  %-5s avg log p(x)  %s nats  (exact log Z)"
              % (r["split"], fixed(r["test_avg_log_p"], 6)))
    else:
        if r["log_z_ais"] < r["log_z_lower_bound"]:
            v = r["ais"][r["ais_chosen_base"]]
            if v["log_z_hi"] < r["log_z_lower_bound"]:
                print("  WARNING     AIS is below the exact lower bound, beyond its 3 sd: it "
                      "missed a mode; log Z is at least the bound, possibly well above")
            else:
                print("  note        AIS is below the exact lower bound but within its 3 sd; "
                      "Z is (almost) all the h = 0 / one-hot terms")
        print("  %-5s avg log p(x)  %s nats  (3 sd: [%s, %s]; exact upper bound %s)"
              % (r["split"], fmt(r["test_avg_log_p"]), fmt(r["test_avg_log_p_lo"]),
                 fmt(r["test_avg_log_p_hi"]), fmt(r["test_avg_log_p_upper_bound"])))
    if r["split"] != "train":  # the line above is the train split's own when it is scored
        print("  train avg log p(x)  %s nats  (same log Z)"
              % (fixed(r["train_avg_log_p"], 6) if r["log_z_method"] == "exact"
                 else fmt(r["train_avg_log_p"])))
    print("  %-5s avg PLL       %s nats/image  (%.4f per pixel), exact, %.1f s"
          % (r["split"], fmt(r["test_avg_pll"]), r["test_avg_pll_per_pixel"], r["pll_seconds"]))
    print("  reference   base-rate model alone: %s avg log p(x) %s nats"
          % (r["split"], fmt(r["base_rate_model_test_avg_log_p"])))
    sys.stdout.flush()


# ---------------------------------------------------------------------------- check

def quick_cd(X, H, iters, lr, k, rng, a_init=None, batch=20):
    """A few minibatch CD-k updates, only to make a non-random model for --check.
    a_init None: no visible bias; otherwise the visible bias starts there and learns."""
    n, d = X.shape
    W = rng.normal(0.0, 0.1, size=(d, H))
    b = np.zeros(H)
    a = None if a_init is None else np.array(a_init, dtype=np.float64)
    for _ in range(iters):
        x0 = X[rng.integers(n, size=batch)]
        ph0 = sigmoid(x0 @ W + b)
        ph = ph0
        for _s in range(k):
            h = (rng.random(ph.shape) < ph).astype(np.float64)
            t = h @ W.T + (0.0 if a is None else a)
            x = (rng.random(t.shape) < sigmoid(t)).astype(np.float64)
            ph = sigmoid(x @ W + b)
        W += lr * (x0.T @ ph0 - x.T @ ph) / batch
        b += lr * (ph0 - ph).mean(axis=0)
        if a is not None:
            a += lr * (x0 - x).mean(axis=0)
    return W, b, a


def run_check(args):
    ok = True
    rng = np.random.default_rng(args.seed)

    # The ternary checks draw from their own generator, so that the binary ones (and their
    # numbers) are what they were before ternary units were added.
    trng = np.random.default_rng(args.seed + 1)
    for ternary, r in ((False, rng), (True, trng)):
        kind = "ternary" if ternary else "binary"
        # 1. The enumeration formula itself, on a model small enough to sum over x and h.
        d, H = 9, 6
        W = r.normal(0, 1.0, (d, H)); b = r.normal(0, 1.0, H); a = r.normal(0, 1.0, d)
        xs = hidden_states(d, False)
        hs = hidden_states(H, ternary)
        brute = logsumexp((xs @ W @ hs.T + (xs @ a)[:, None] + (hs @ b)[None, :]).ravel())
        via_h = exact_log_z_by_hidden(W, b, a, ternary)
        via_x = logsumexp(neg_free_energy(xs, W, b, a, ternary))
        bound = log_z_lower_bound(W, b, a, ternary)[0]
        good = abs(brute - via_h) < 1e-9 and abs(brute - via_x) < 1e-9 and bound <= brute
        ok &= good
        print("check enumeration (d=9, H=6 %s): brute %.10f  via h %.10f  via x %.10f  "
              "lower bound %.4f  %s"
              % (kind, brute, via_h, via_x, bound, "OK" if good else "FAIL"))

        # 2. PLL against a direct per-pixel computation with free energies.
        X = (r.random((5, d)) < 0.5).astype(np.float64)
        direct = np.zeros(5)
        for n in range(5):
            f0 = neg_free_energy(X[n:n + 1], W, b, a, ternary)[0]
            for i in range(d):
                xf = X[n:n + 1].copy(); xf[0, i] = 1 - xf[0, i]
                f1 = neg_free_energy(xf, W, b, a, ternary)[0]
                direct[n] += f0 - np.logaddexp(f0, f1)
        fast = pseudo_log_likelihood(X, W, b, a, batch=2, ternary=ternary)
        err = float(np.max(np.abs(direct - fast)))
        good = err < 1e-9
        ok &= good
        print("check PLL (d=9, H=6 %s, 5 images): max |direct - vectorized| = %.2e  %s"
              % (kind, err, "OK" if good else "FAIL"))

    # The ternary draw's frequencies against p(v) = exp(v t) / (1 + 2 cosh t): 10^6 draws
    # per t, so each frequency is within 5e-3 (more than 10 standard deviations).
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        u = trng.random(10 ** 6, dtype=np.float32)
        h = ternary_draw(np.full(u.shape, t, dtype=np.float32), u)
        freq = np.array([np.mean(h == v) for v in (-1.0, 0.0, 1.0)])
        want = np.exp(np.array([-t, 0.0, t])) / (1.0 + 2.0 * math.cosh(t))
        good = float(np.max(np.abs(freq - want))) < 5e-3
        ok &= good
        print("check ternary draw t=%+.1f: frequencies %s, p %s  %s"
              % (t, np.round(freq, 4), np.round(want, 4), "OK" if good else "FAIL"))

    # 3. AIS against exact log Z on H = 10 models over the 784 MNIST pixels.
    Xtrain = load_digit(args.mnist, "train", args.digit)
    aA = base_rate_biases(Xtrain)
    models = []
    Wr = rng.normal(0, 0.1, (784, 10)); br = np.zeros(10)
    models.append(("random, W~N(0,0.1^2), b=0, no a", Wr, br, None, False))
    Wr = rng.normal(0, 0.5, (784, 10)); br = rng.normal(0, 1.0, 10)
    ar = rng.normal(-1.0, 1.0, 784)
    models.append(("random, W~N(0,0.5^2), b~N(0,1), a~N(-1,1)", Wr, br, ar, False))
    t0 = time.perf_counter()
    W1, b1, _ = quick_cd(Xtrain, 10, 2000, 0.05, 3, rng, a_init=None)
    models.append(("CD-3 trained, no a", W1, b1, None, False))
    W2, b2, a2 = quick_cd(Xtrain, 10, 2000, 0.05, 3, rng, a_init=np.zeros(784))
    models.append(("CD-3 trained, a from 0", W2, b2, a2, False))
    W3, b3, a3 = quick_cd(Xtrain, 10, 2000, 0.05, 3, rng, a_init=aA)
    models.append(("CD-3 trained, a from base rates", W3, b3, a3, False))
    # Ternary units on the same weights: the no-a one has the inverted-digit mode that
    # README's "Ternary hidden units" describes, which only the uniform base finds.
    models.append(("ternary, CD-3 weights, no a", W1, b1, None, True))
    models.append(("ternary, CD-3 weights, a from base rates", W3, b3, a3, True))
    print("check: trained three H=10 models (2000 CD-3 updates of 20 images, lr 0.05) "
          "in %.1f s" % (time.perf_counter() - t0))
    for name, W, b, a, ternary in models:
        exact = exact_log_z_by_hidden(W, b, a, ternary)
        best, per = ais_all_bases(W, b, a, aA, args, rng, ternary)
        for base, v in per.items():
            print("  %-42s AIS from %-9s %.4f  [%s, %s]  err %+8.4f  ESS %5.1f  %.1f s"
                  % (name, base, v["log_z"], fmt(v["log_z_lo"]), fmt(v["log_z_hi"]),
                     v["log_z"] - exact, v["ess"], v["seconds"]))
        v = per[best]
        est, lo, hi = v["log_z"], v["log_z_lo"], v["log_z_hi"]
        err = est - exact
        inside = lo <= exact <= hi
        near = (lo - 0.1) <= exact <= (hi + 0.1)
        good = abs(err) < 0.5 and near
        ok &= good
        print("check AIS %-42s exact %.4f  estimate %.4f (%s)  err %+.4f  %s  %s"
              % (name, exact, est, best, err,
                 "inside 3 sd" if inside else ("within 0.1 of 3 sd" if near else "OUTSIDE 3 sd"),
                 "OK" if good else "FAIL"))
        sys.stdout.flush()
    print("check: %s" % ("all OK" if ok else "FAILED"))
    return 0 if ok else 1


# ---------------------------------------------------------------------------- main

# The files of a run directory that its training writes and owns (host/checkpoint.cpp's
# run_file_names), each also as its staged NAME.next: --json does not replace them.
RUN_FILE_NAMES = ("run.json", "metrics.csv", "weights.png", "W.npy", "b.npy", "a.npy",
                  "vW.npy", "vb.npy", "va.npy", "chains.npy")


def protected_link(path):
    """The first symbolic link on the way from `path` to the file it names that open(2) does not
    follow under Linux's fs.protected_symlinks when it is on, as systemd sets it (another user's
    link in a sticky world-writable directory such as /tmp: following it could replace that
    user's choice of file), or None."""
    try:
        with open("/proc/sys/fs/protected_symlinks") as setting:
            if setting.read(1) == "0":
                return None  # the kernel follows every link, so this does too
    except OSError:
        pass  # unknown: the safer guess, protected
    for _ in range(40):
        if not os.path.islink(path):
            return None
        directory = os.path.dirname(path) or "."
        dir_status = os.stat(directory)
        owner = os.lstat(path).st_uid
        if (dir_status.st_mode & stat.S_ISVTX and dir_status.st_mode & stat.S_IWOTH
                and owner not in (os.geteuid(), dir_status.st_uid)):
            return path
        target = os.readlink(path)
        path = target if os.path.isabs(target) else os.path.join(directory, target)
    return None


def json_output(p, path):
    """The file --json writes, checked before the evaluation (minutes) rather than after it:
    `path` with its symbolic links resolved (a link's target is written, as a shell's > writes
    it), after refusing (p.error, exit 2) a path that names a directory or another non-regular
    file, one whose directory is missing or cannot be written, and a file that a run directory
    owns (one holding run.json or W.npy: a typo must not replace a model)."""
    where = "--json %s: " % path
    if not path:
        p.error("--json: empty value")
    if path.endswith(os.sep) or os.path.basename(path) in (".", ".."):
        p.error(where + "names a directory, not a file")
    link = protected_link(path)
    if link is not None:
        p.error(where + "the symbolic link %s is another user's, in a sticky world-writable "
                "directory: not followed, as open(2) would not (fs.protected_symlinks)" % link)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None   # a new file, or a link to one
    except OSError as e:
        p.error(where + "cannot be examined: " + e.strerror)
    if mode is not None and stat.S_ISDIR(mode):
        p.error(where + "is a directory")
    if mode is not None and not stat.S_ISREG(mode):
        p.error(where + "exists and is not a regular file")
    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    shown = parent if os.path.islink(path) else (os.path.dirname(path) or ".")
    if not os.path.exists(parent):
        p.error(where + "its directory %s does not exist" % shown)
    if not os.path.isdir(parent):
        p.error(where + "%s is not a directory" % shown)
    if not os.access(parent, os.W_OK | os.X_OK):
        p.error(where + "cannot write in %s" % shown)
    for name in (path, real):
        base = os.path.basename(name)
        base = base[:-len(".next")] if base.endswith(".next") else base
        directory = os.path.dirname(name) or "."
        if base in RUN_FILE_NAMES and any(os.path.exists(os.path.join(directory, marker))
                                          for marker in ("run.json", "W.npy")):
            p.error(where + "is a file of the run directory %s (its checkpoint, records or "
                    "mosaic), which this script does not overwrite; name another file"
                    % directory)
    return real


# AIS's flags and their defaults.
AIS_FLAGS = ("--runs", "--betas", "--base", "--seed")
AIS_DEFAULTS = {"runs": 100, "betas": 14500, "base": "both", "seed": 0}


def fail(message):
    """A refusal that is no flag's syntax, found after parsing (a model too large for --method
    exact): one line on stderr as argparse words its errors, exit 2, before any long work."""
    sys.stderr.write("%s: error: %s\n" % (os.path.basename(sys.argv[0]), message))
    sys.exit(2)


def digit_arg(text):
    if text == "all":
        return text
    if text.isdigit() and 0 <= int(text) <= 9:
        return int(text)
    raise argparse.ArgumentTypeError("must be 0..9 or all, not %r" % text)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_mnist = os.path.normpath(os.path.join(here, "..", "data", "mnist"))
    p = argparse.ArgumentParser(
        description="Independent RBM evaluation: AIS log Z, test log-likelihood, "
                    "exact pseudo-log-likelihood (numpy only).")
    p.add_argument("models", nargs="*", metavar="MODEL_DIR",
                   help="folder(s) holding W.npy, b.npy and optionally a.npy and run.json "
                        "(its hidden type, digit and data folder)")
    p.add_argument("--mnist", default=None,
                   help="folder with the MNIST IDX files (raw or .gz) [a model's run.json "
                        "data.dir when it exists, else %s]" % default_mnist)
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="images to score [%(default)s]; the base rates "
                        "always come from the training split")
    p.add_argument("--digit", type=digit_arg, default=None,
                   help="0..9 or all [a model's run.json data.digit, else 3]")
    p.add_argument("--method", choices=["auto", "exact", "ais"], default=None,
                   help="log Z: exact by enumerating the hidden states (H <= %d binary, H <= %d "
                        "ternary: at H = 20 about 3.5 s on two cores; each unit "
                        "more doubles, or triples, that), or ais; auto is exact up to those "
                        "H, else AIS [auto]" % (EXACT_MAX_H[False], EXACT_MAX_H[True]))
    p.add_argument("--runs", type=int, default=None, help="AIS runs M [%d]" % AIS_DEFAULTS["runs"])
    p.add_argument("--betas", type=int, default=None,
                   help="AIS intermediate distributions [%d]" % AIS_DEFAULTS["betas"])
    p.add_argument("--base", choices=["both", "base-rate", "uniform"], default=None,
                   help="AIS base model(s); with both, the larger log Z is used "
                        "[%s]" % AIS_DEFAULTS["base"])
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the AIS draws [%d]" % AIS_DEFAULTS["seed"])
    p.add_argument("--json", default=None, help="write the numbers to this file")
    p.add_argument("--check", action="store_true",
                   help="validate AIS and PLL on small exactly-solvable models, then exit")
    args = p.parse_args()
    # The AIS flags given (not left at their defaults): --method exact refuses them, as eval
    # does, and with an exact log Z under auto the report says they were not used.
    args.given = [flag for flag in AIS_FLAGS if getattr(args, flag[2:]) is not None]
    for flag in AIS_FLAGS:
        if getattr(args, flag[2:]) is None:
            setattr(args, flag[2:], AIS_DEFAULTS[flag[2:]])
    # The bounds of rbm_cpu eval's --ais-runs and --ais-betas.
    if not 2 <= args.runs <= 10**7:
        p.error("--runs must be from 2 to 10000000")
    if not 3 <= args.betas <= 10**8:
        p.error("--betas must be from 3 to 100000000")
    if args.seed < 0:
        p.error("--seed must be at least 0")
    if args.check and args.method is not None:
        p.error("--method: --check computes log Z both ways itself")
    args.method = args.method or "auto"
    if args.method == "exact" and args.given:
        p.error("%s set%s AIS, which --method exact does not run"
                % (", ".join(args.given), "s" if len(args.given) == 1 else ""))
    if args.check and (args.models or args.json is not None):
        p.error("--check scores its own models: it takes no MODEL_DIR and no --json")
    json_path = json_output(p, args.json) if args.json is not None else None

    if args.check:
        args.mnist = args.mnist or default_mnist
        args.digit = 3 if args.digit is None else args.digit
        return run_check(args)
    if not args.models:
        p.error("give at least one MODEL_DIR (or --check)")

    loaded = {}
    def images_for(run_digit, run_mnist):
        """The images a model is scored on: the flags' choice, else its run.json's, else
        threes in data/mnist. Loaded once per (folder, digit)."""
        if args.digit is not None:
            digit, digit_from = args.digit, "--digit"
        elif run_digit is not None:
            digit, digit_from = run_digit, "run.json"
        else:
            digit, digit_from = 3, "default"
        mnist = args.mnist or run_mnist or default_mnist
        key = (mnist, digit)
        if key not in loaded:
            Xtrain = load_digit(mnist, "train", digit)
            loaded[key] = {"train": Xtrain, "test": load_digit(mnist, args.split, digit),
                           "base_rates": base_rate_biases(Xtrain)}
        return dict(loaded[key], digit=digit, digit_from=digit_from, mnist=mnist)

    # Read every model and its run.json before the long work, so that a bad one fails early.
    models = [(folder,) + load_model(folder) + load_run_json(folder) for folder in args.models]
    for folder, W, _b, _a, hidden_type, _digit, _mnist, _split in models:
        limit = EXACT_MAX_H[hidden_type == "ternary"]
        if args.method == "exact" and W.shape[1] > limit:
            fail("--method exact: %s has H = %d %s hidden units; this script enumerates at most "
                 "%d (%d^%d states; --method ais estimates log Z)"
                 % (folder, W.shape[1], hidden_type, limit, 3 if hidden_type == "ternary" else 2,
                    limit))
    results = []
    for i, (folder, W, b, a, hidden_type, run_digit, run_mnist, run_split) in enumerate(models):
        data = images_for(run_digit, run_mnist)
        # MNIST's splits are disjoint and its digits partition them: the scored images overlap
        # the training images exactly when both the digits and the splits meet. Unknown (None)
        # without run.json's record.
        data["trained_on_some"] = None
        if run_digit is not None and run_split is not None:
            data["trained_on_some"] = (
                (data["digit"] == "all" or run_digit in ("all", data["digit"]))
                and (args.split == "all" or run_split in ("all", args.split)))
            data["trained_on"] = "digit %s, split %s" % (run_digit, run_split)
        if W.shape[0] != data["test"].shape[1]:
            exit_error("%s has d=%d visible units but the images have %d pixels"
                      % (folder, W.shape[0], data["test"].shape[1]))
        rng = np.random.default_rng(args.seed)   # same draws for every model
        if i:
            print()
        results.append(evaluate(folder, W, b, a, hidden_type == "ternary", data, args, rng))
    if json_path:
        def clean(v):
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v
        out = [clean(r) for r in results]
        # Written whole or not at all: a temporary file beside the target, renamed over it.
        tmp = json_path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(out if len(out) > 1 else out[0], f, indent=2)
                f.write("\n")
            os.replace(tmp, json_path)
        except OSError as e:
            try:
                os.remove(tmp)
            except OSError:
                pass
            exit_error("cannot write %s: %s" % (args.json, e.strerror))
    return 0


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except MemoryError:
        # numpy's arrays of all runs at once, (runs, 784) floats: 1e7 runs need 31 GB.
        exit_error("out of memory: the AIS runs' states do not fit this machine's memory "
                   "(fewer --runs)")
    except OSError as e:
        if e.filename is not None:
            raise
        # The report could not be written to stdout (a full disk, a closed pipe): one line, not
        # a traceback. What stays buffered would fail again at exit: stdout becomes /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        exit_error("cannot write the report to stdout: %s" % e.strerror)
    sys.exit(code)
