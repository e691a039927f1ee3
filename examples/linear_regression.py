"""Linear regression by gradient descent
=====================================

Gradient descent converges to least squares.

A network with no hidden layer and an identity output is the linear model
``y = x.W + b``, and fastnn's squared error ``0.5 * mean(|y - t|^2)`` is the
least squares objective; full-batch gradient descent on it converges to the
solution that np.linalg.pinv gives in closed form.

Run it::

    python examples/linear_regression.py
"""
import argparse

import numpy as np

import fastnn

# A tiny table: engine size (l), weight (t), age (years) -> fuel use (l/100 km).
TABLE = np.array([
    [1.2, 1.30, 3, 6.2], [1.4, 1.05, 7, 6.5], [1.6, 1.45, 2, 7.1], [2.0, 1.20, 5, 7.9],
    [1.0, 1.10, 9, 5.8], [2.5, 1.50, 4, 9.4], [1.8, 1.60, 6, 8.3], [3.0, 1.35, 1, 10.1],
    [1.3, 0.95, 12, 6.6], [2.2, 1.75, 8, 9.3],
])


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--lr", type=float, default=0.5)
    args = p.parse_args(argv)
    x, t = TABLE[:, :3], TABLE[:, 3]
    # Standardise the inputs: gradient descent converges much faster when
    # the features have comparable scales (the fit is the same model).
    mu, sd = x.mean(axis=0), x.std(axis=0)
    xs = (x - mu) / sd

    # Closed form: [W; b] = pinv([x 1]) t.
    A = np.column_stack([xs, np.ones(len(xs))])
    exact = np.linalg.pinv(A) @ t

    net = fastnn.Network([3, 1], output="identity", init="uniform", init_scale=0.1, seed=0,
                         dtype="float64")
    hist = net.fit(xs, t, epochs=args.epochs, batch_size=len(xs), lr=args.lr, shuffle=False)
    learned = np.concatenate([net.weights[0].ravel(), net.biases[0]])
    err = np.abs(learned - exact).max()
    print("            " + "".join(f"{n:>10}" for n in ("w_engine", "w_weight", "w_age", "b")))
    print("pinv      : " + "".join(f"{v:10.5f}" for v in exact))
    print("fastnn GD : " + "".join(f"{v:10.5f}" for v in learned))
    print(f"max |difference| = {err:.2e} after {args.epochs} full-batch steps "
          f"(final loss {hist['loss'][-1]:.6f})")
    return learned, exact


if __name__ == "__main__":
    main()
