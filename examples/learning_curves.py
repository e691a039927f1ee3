"""Learning curves
===============

Test accuracy per epoch for three optimizers on MNIST,
written to a PNG (needs matplotlib: pip install 'fastnn[plot]').

Run it::

    python examples/learning_curves.py --epochs 10 --out curves.png
"""
import argparse

import numpy as np

import fastnn

RUNS = {
    "SGD lr 0.5": dict(optimizer="sgd", lr=0.5),
    "SGD + Nesterov lr 0.05": dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True),
    "Adam lr 1e-3, cosine": dict(optimizer="adam", lr=1e-3, lr_schedule="cosine"),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="learning_curves.png")
    args = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x, y), (xt, yt) = fastnn.load_mnist()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    epochs = np.arange(1, args.epochs + 1)
    for name, opt in RUNS.items():
        net = fastnn.Network([784, 100, 50, 10], seed=8)
        hist = net.fit(x, y, epochs=args.epochs, batch_size=100, validation_data=(xt, yt),
                       **opt)
        print(f"{name:>24}: test accuracy {100 * hist['val_accuracy'][-1]:.2f}% "
              f"after {args.epochs} epochs ({sum(hist['seconds']):.1f}s)")
        line, = ax_loss.plot(epochs, hist["loss"], "-", label=f"{name} (train)")
        ax_loss.plot(epochs, hist["val_loss"], "--", color=line.get_color(),
                     label=f"{name} (test)")
        ax_acc.plot(epochs, 100 * np.asarray(hist["val_accuracy"]), "o-",
                    color=line.get_color(), label=name)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss (solid: train, dashed: test)")
    ax_loss.set_yscale("log")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="MNIST 784-100-50-10")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
