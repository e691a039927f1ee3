"""What dropout costs: the classic MNIST epoch with and without it, in
fastnn and in PyTorch eager (same network, batch, SGD settings).

    python bench/dropout_cost.py                # median of 5 epochs each (alternating)
    python bench/dropout_cost.py --rate 0.5 --epochs 7

Prints seconds per epoch and the ratios within this one run: dropout's
cost in each system, and PyTorch's time over fastnn's with dropout.
"""
import argparse
import statistics
import time

import numpy as np

import fastnn


def fastnn_epochs(x, y, rate, epochs):
    """Median seconds of an epoch without and with dropout ``rate``, the two
    alternating epoch by epoch (a busy host slows both alike)."""
    nets = [fastnn.Network([784, 100, 50, 10], seed=8) for _ in range(2)]
    kws = [dict(epochs=1, batch_size=100, lr=0.5, shuffle=False, dropout=r)
           for r in (None, rate)]
    for net, kw in zip(nets, kws):
        net.fit(x[:1000], y[:1000], **kw)  # compile or load the kernels first
    times = ([], [])
    for _ in range(epochs):
        for net, kw, t in zip(nets, kws, times):
            t0 = time.perf_counter()
            net.fit(x, y, **kw)
            t.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def torch_epochs(x, y, rate, epochs):
    import torch

    layers = [torch.nn.Linear(784, 100), torch.nn.ReLU()]
    if rate > 0:
        layers.append(torch.nn.Dropout(rate))
    layers += [torch.nn.Linear(100, 50), torch.nn.ReLU()]
    if rate > 0:
        layers.append(torch.nn.Dropout(rate))
    layers.append(torch.nn.Linear(50, 10))
    model = torch.nn.Sequential(*layers).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        for s in range(0, len(X), 100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[s:s + 100]), Y[s:s + 100]).backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args(argv)
    (x, y), _ = fastnn.load_mnist()
    y = y.astype(np.int64)
    print(f"classic 784-100-50-10, batch 100, SGD lr 0.5, float32, {fastnn.get_num_threads()} "
          f"threads; median of {args.epochs} epochs")
    results = {"fastnn": fastnn_epochs(x, y, args.rate, args.epochs)}
    try:
        import torch
        torch.set_num_threads(fastnn.get_num_threads())
        results["PyTorch eager"] = (torch_epochs(x, y, 0.0, args.epochs),
                                    torch_epochs(x, y, args.rate, args.epochs))
    except ImportError:
        print("PyTorch is not installed: pip install torch (CPU)")
    for name, (plain, drop) in results.items():
        print(f"{name:>14}: {plain:.3f} s/epoch, with dropout {args.rate:g}: {drop:.3f} s/epoch "
              f"({drop / plain:.2f}x)")
    if len(results) == 2:
        print(f"PyTorch eager with dropout / fastnn with dropout: "
              f"{results['PyTorch eager'][1] / results['fastnn'][1]:.1f}x")
    return results


if __name__ == "__main__":
    main()
