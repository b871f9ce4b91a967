#!/usr/bin/env python3
"""The peer column of bench/bench_all: this project's three RBM workloads written the way a
PyTorch user would write them, plainly (tensors, matmul, torch.bernoulli, no custom kernels).
On the GPU when torch sees one (unless --cpu), else on the CPU with torch's default threads
(forcing more made it far slower on the 2-core development machine: OpenMP and OpenBLAS threads
fight over the cores).

  torch_rbm.py recipe [--iters 25000]                      single-sample CD-3, H 100, MNIST threes
  torch_rbm.py sample [--chains N] [--steps K] [--hidden H]  N independent chains, K Gibbs steps
  torch_rbm.py pcd [--hidden 500] [--batch 100] [--epochs 1] [--updates U]
                                                            minibatch PCD-1 on the 60000 digits

Each prints one line "<workload> device <cpu|cuda> seconds <s> ..." for the harness to read; the
seconds cover the training or sampling loop only (data loading and set-up excluded), after a
short warm-up, with the device synchronized at both ends.
"""
import argparse
import gzip
import os
import time

import torch


def sync(dev):
    if dev.type == 'cuda':
        torch.cuda.synchronize()


def idx_file(mnist, name):
    """The bytes of an IDX file, raw or gzipped, from data/mnist."""
    path = os.path.join(mnist, name)
    if os.path.exists(path):
        with open(path, 'rb') as f:
            return f.read()
    with gzip.open(path + '.gz', 'rb') as f:
        return f.read()


def mnist_train(mnist, digit, dev):
    """Binarized (pixel > 127.5) training images, all digits or one; stand-in noise of MNIST's
    density when the files are missing (the timing does not depend on the pixels)."""
    try:
        images = idx_file(mnist, 'train-images-idx3-ubyte')[16:]
        labels = idx_file(mnist, 'train-labels-idx1-ubyte')[8:]
    except OSError:
        n = 6131 if digit is not None else 60000
        return (torch.rand(n, 784, device=dev) < 0.13).float()
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).view(-1, 784)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8)
    if digit is not None:
        x = x[y == digit]
    return (x > 127).float().to(dev)


def recipe(o, dev):
    """The reference recipe: each iteration one uniformly drawn image, CD-3, SGD."""
    data = mnist_train(o.mnist, 3, dev)
    W = torch.randn(784, 100, device=dev) * 0.1
    b = torch.zeros(100, device=dev)
    picks = torch.randint(0, data.shape[0], (o.iters + 100,), device=dev)

    def step(t):
        x0 = data[picks[t]]
        p0 = torch.sigmoid(x0 @ W + b)
        h = torch.bernoulli(p0)
        for s in range(3):
            x = torch.bernoulli(torch.sigmoid(W @ h))
            p = torch.sigmoid(x @ W + b)
            if s < 2:
                h = torch.bernoulli(p)
        W.add_(o.lr * (torch.outer(x0, p0) - torch.outer(x, p)))
        b.add_(o.lr * (p0 - p))

    for t in range(100):
        step(o.iters + t)
    sync(dev)
    start = time.perf_counter()
    for t in range(o.iters):
        step(t)
    sync(dev)
    seconds = time.perf_counter() - start
    print(f'recipe device {dev.type} seconds {seconds:.4f} iters {o.iters} '
          f'us_per_iter {1e6 * seconds / o.iters:.2f}')


def sample(o, dev):
    """N chains x -> h -> x' for K steps under a fixed random model."""
    W = torch.randn(784, o.hidden, device=dev) * 0.05
    b = torch.zeros(o.hidden, device=dev)
    a = torch.zeros(784, device=dev)
    x = (torch.rand(o.chains, 784, device=dev) < 0.5).float()

    def steps(k, x):
        for _ in range(k):
            h = torch.bernoulli(torch.sigmoid(x @ W + b))
            x = torch.bernoulli(torch.sigmoid(h @ W.T + a))
        return x

    x = steps(2, x)
    sync(dev)
    start = time.perf_counter()
    x = steps(o.steps, x)
    sync(dev)
    seconds = time.perf_counter() - start
    print(f'sample device {dev.type} seconds {seconds:.4f} hidden {o.hidden} chains {o.chains} '
          f'steps {o.steps} chain_steps_per_s {o.chains * o.steps / seconds:.4e}')


def pcd(o, dev):
    """Minibatch PCD-1 over shuffled epochs of the training digits, chains = batch."""
    data = mnist_train(o.mnist, None, dev)
    n, B, H = data.shape[0], o.batch, o.hidden
    W = torch.randn(784, H, device=dev) * 0.01
    b = torch.zeros(H, device=dev)
    a = torch.zeros(784, device=dev)
    chains = data[torch.randint(0, n, (B,), device=dev)].clone()
    order = [torch.randperm(n, device=dev) for _ in range(o.epochs)]

    def update(x0):
        nonlocal chains
        p0 = torch.sigmoid(x0 @ W + b)
        h = torch.bernoulli(torch.sigmoid(chains @ W + b))
        chains = torch.bernoulli(torch.sigmoid(h @ W.T + a))
        pk = torch.sigmoid(chains @ W + b)
        W.add_(o.lr * (x0.T @ p0 - chains.T @ pk) / B)
        b.add_(o.lr * (p0 - pk).mean(0))
        a.add_(o.lr * (x0 - chains).mean(0))

    for s in range(3):
        update(data[s * B:(s + 1) * B])
    updates = o.epochs * (n // B) if o.updates <= 0 else min(o.updates, o.epochs * (n // B))
    sync(dev)
    start = time.perf_counter()
    for u in range(updates):
        e, s = divmod(u, n // B)
        update(data[order[e][s * B:(s + 1) * B]])
    sync(dev)
    seconds = time.perf_counter() - start
    print(f'pcd device {dev.type} seconds {seconds:.4f} hidden {H} batch {B} images {n} '
          f'updates {updates} updates_per_s {updates / seconds:.1f}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('workload', choices=['recipe', 'sample', 'pcd'])
    ap.add_argument('--mnist', default='data/mnist')
    ap.add_argument('--iters', type=int, default=25000)
    ap.add_argument('--lr', type=float, default=0.005)
    ap.add_argument('--chains', type=int, default=65536)
    ap.add_argument('--steps', type=int, default=100)
    ap.add_argument('--hidden', type=int, default=100)
    ap.add_argument('--batch', type=int, default=100)
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--updates', type=int, default=0, help='pcd: stop after this many (0: all)')
    ap.add_argument('--cpu', action='store_true', help='stay on the CPU even when a GPU is seen')
    o = ap.parse_args()
    dev = torch.device('cuda' if torch.cuda.is_available() and not o.cpu else 'cpu')
    torch.manual_seed(0)
    with torch.no_grad():
        {'recipe': recipe, 'sample': sample, 'pcd': pcd}[o.workload](o, dev)


if __name__ == '__main__':
    main()
