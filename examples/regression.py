"""Regression with fastnn
======================

A smooth function of 4 inputs learned by an MLP.

Target: y = sin(2 x0) + x1**2 - x2 x3 + noise, on uniform inputs in [-1, 1].
Shows fastnn.MLPRegressor (scikit-learn API, needs scikit-learn) and the
same model with fastnn.Network (identity output, squared error).

Run it::

    python examples/regression.py
"""
import argparse
import warnings

import numpy as np

import fastnn


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 4))
    y = np.sin(2 * x[:, 0]) + x[:, 1] ** 2 - x[:, 2] * x[:, 3] + 0.05 * rng.standard_normal(n)
    return x, y


def r2(y, p):
    return 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--epochs", type=int, default=200)
    args = p.parse_args(argv)
    x, y = make_data(4000, 0)
    xt, yt = make_data(1000, 1)
    results = {}

    net = fastnn.Network([4, 64, 64, 1], hidden="tanh", output="identity", init="glorot",
                         seed=0)
    hist = net.fit(x, y, epochs=args.epochs, batch_size=32, optimizer="adam", lr=3e-3,
                   lr_schedule="cosine")
    results["Network"] = r2(yt, net.predict(xt).ravel())
    print(f"fastnn.Network       : final train loss {hist['loss'][-1]:.5f}, "
          f"test R^2 {results['Network']:.4f}")

    try:
        reg = fastnn.MLPRegressor(hidden_layer_sizes=(64, 64), activation="tanh",
                                  learning_rate_init=3e-3, batch_size=32,
                                  max_iter=args.epochs, random_state=0)
    except ImportError as e:
        print(f"skipping MLPRegressor: {e}")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg.fit(x, y)
        results["MLPRegressor"] = reg.score(xt, yt)
        print(f"fastnn.MLPRegressor  : {reg.n_iter_} epochs, test R^2 "
              f"{results['MLPRegressor']:.4f}")
    print(f"(noise floor: the best possible test R^2 is about "
          f"{1 - 0.05 ** 2 / yt.var():.4f})")
    return results


if __name__ == "__main__":
    main()
