"""Memory and endurance of a long classic MNIST run.

Trains the classic configuration (784-100-50-10, relu, softmax, lr 0.5,
batch 100, seed 8, no shuffling, float32) for 50 epochs and reports:

* the float32 size of the training data and of the model;
* the process's resident memory (RSS) before loading the data, after
  loading it, and after each epoch; the peak RSS during ``fit`` (the
  kernel's high-water mark, reset just before ``fit`` through
  ``/proc/self/clear_refs``, so loading's temporaries do not count);
* the extra memory ``fit`` allocates (peak traced by ``tracemalloc``,
  which sees NumPy's allocations);
* growth of RSS from epoch 5 to the last epoch (there should be none);
* final test accuracy and whether all parameters are finite.

    python bench/endurance.py                 # 50 epochs
    python bench/endurance.py --epochs 10 --json endurance.json
"""
import argparse
import json
import resource
import time
import tracemalloc

import numpy as np


def rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2 ** 20


def _status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import fastnn

    # Load the compiled kernels first, so their memory is not counted as fit's.
    fastnn.Network([4, 3, 2], seed=0).fit(np.zeros((4, 4), np.float32), [0, 1, 0, 1])
    rss_start = rss_mb()
    (x, y), (xt, yt) = fastnn.load_mnist()
    rss_data = rss_mb()
    net = fastnn.Network([784, 100, 50, 10], seed=8)
    data_mb = (x.nbytes + y.nbytes) / 2 ** 20
    model_mb = net.theta.nbytes / 2 ** 20
    per_epoch = []

    def record(n, h):
        per_epoch.append(rss_mb())

    import gc

    gc.collect()
    rss_before_fit = rss_mb()
    hwm_reset = reset_peak_rss()
    tracemalloc.start()
    base_traced = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    hist = net.fit(x, y, epochs=args.epochs, batch_size=100, lr=0.5, shuffle=False,
                   validation_data=(xt, yt), callbacks=[record])
    seconds = time.perf_counter() - t0
    fit_extra_mb = (tracemalloc.get_traced_memory()[1] - base_traced) / 2 ** 20
    tracemalloc.stop()
    peak_mb = (_status_mb("VmHWM:") if hwm_reset
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    k = min(5, len(per_epoch)) - 1
    result = {
        "epochs": args.epochs,
        "seconds": seconds,
        "train_data_float32_mb": data_mb,
        "model_mb": model_mb,
        "rss_before_data_mb": rss_start,
        "rss_after_data_mb": rss_data,
        "rss_per_epoch_mb": per_epoch,
        "rss_before_fit_mb": rss_before_fit,
        "peak_rss_during_fit_mb": peak_mb,
        "fit_peak_rss_increase_mb": peak_mb - rss_before_fit,
        "data_plus_fit_mb": data_mb + peak_mb - rss_before_fit,
        "fit_extra_traced_mb": fit_extra_mb,
        "limit_mb": 2 * data_mb + model_mb,
        "rss_growth_after_epoch_%d_mb" % (k + 1): per_epoch[-1] - per_epoch[k],
        "final_test_accuracy": hist["val_accuracy"][-1],
        "best_test_accuracy": max(hist["val_accuracy"]),
        "finite_parameters": bool(np.isfinite(net.theta).all()),
    }
    print(f"training data (float32) {data_mb:.1f} MB, model {model_mb:.2f} MB; "
          f"limit 2 x data + model = {result['limit_mb']:.1f} MB")
    print(f"RSS: {rss_start:.1f} MB before the data, {rss_data:.1f} MB with it (and the "
          f"test set), {rss_before_fit:.1f} MB before fit, peak during fit {peak_mb:.1f} MB: "
          f"fit adds {peak_mb - rss_before_fit:.1f} MB; training data + fit = "
          f"{data_mb + peak_mb - rss_before_fit:.1f} MB")
    print(f"fit's own allocations (tracemalloc peak): {fit_extra_mb:.1f} MB")
    print(f"RSS after epoch {k + 1}: {per_epoch[k]:.1f} MB, after epoch {len(per_epoch)}: "
          f"{per_epoch[-1]:.1f} MB (growth {per_epoch[-1] - per_epoch[k]:+.2f} MB)")
    print(f"{args.epochs} epochs in {seconds:.1f}s; test accuracy {100 * hist['val_accuracy'][-1]:.2f}% "
          f"(best {100 * max(hist['val_accuracy']):.2f}%); parameters finite: "
          f"{result['finite_parameters']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
