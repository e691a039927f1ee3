"""Epoch policies: the learning rate of each epoch, when to stop, and which
parameters to keep. :func:`fastnn.engine.training.run_epochs` asks its policy
``learning_rate(i)`` before epoch ``i`` (0-based, within the call) and
``after_epoch(record, theta, rows)`` after it (True stops); ``finish(theta)``
restores the best parameters where the rule keeps them.

* :class:`ScheduleAndPatience`: ``Network.fit`` -- a learning-rate schedule,
  and optional early stopping on the validation loss (Keras' rule).
* :class:`ScikitLearnRule`: the estimators -- scikit-learn's ``tol`` /
  ``n_iter_no_change`` rule on the training loss or the validation score,
  with its ``constant``/``invscaling``/``adaptive`` learning rates.
"""
import math

import numpy as np


class ScheduleAndPatience:
    def __init__(self, schedule, lr, early_stopping=False, patience=10, min_delta=0.0):
        self.schedule, self.lr0 = schedule, lr
        self.early_stopping, self.patience, self.min_delta = early_stopping, patience, min_delta
        self.best = (math.inf, None, 0)  # (val_loss, parameters, epoch)
        self.stale = 0
        self.epoch = 0

    def learning_rate(self, i):
        lr = float(self.schedule(i, self.lr0))
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr_schedule gave lr={lr} for epoch {i + 1}; need a finite "
                             f"rate > 0")
        return lr

    def rates_ahead(self, i, k):
        """The rates of epochs ``i..i+k-1`` if this policy can run them
        without looking at any but the last (no early stopping: it never
        stops); else just epoch ``i``'s."""
        if self.early_stopping:
            return [self.learning_rate(i)]
        return [self.learning_rate(i + j) for j in range(k)]

    def divergence_message(self, epoch, lr):
        return (f"training diverged in epoch {epoch} (NaN or infinite loss); the parameters "
                f"were restored to those before that epoch. Try a smaller learning rate "
                f"than lr={lr}.")

    def after_epoch(self, record, theta, rows):
        self.epoch += 1
        if not self.early_stopping:
            return False
        if record["val_loss"] < self.best[0] - self.min_delta:
            self.best = (record["val_loss"], theta.copy(), self.epoch)
            self.stale = 0
            return False
        self.stale += 1
        return self.stale >= self.patience

    def finish(self, theta):
        """Restore the best epoch's parameters; returns its number (or None)."""
        if self.early_stopping and self.best[1] is not None:
            theta[...] = self.best[1]
            return self.best[2]
        return None


class ScikitLearnRule:
    """scikit-learn's ``_fit_stochastic`` decisions, state kept between
    ``fit``/``partial_fit`` calls as scikit-learn keeps it on the estimator
    and its ``_optimizer``."""

    MIN_ADAPTIVE_LR = 1e-6  # 'adaptive' stops once the rate would fall below this

    def __init__(self, learning_rate_init):
        self.lr = float(learning_rate_init)
        self.n_iter = 0                 # epochs of the current call (n_iter_)
        self.t = 0                      # samples seen (t_)
        self.no_improvement_count = 0
        self.best_loss = math.inf
        self.best_validation_score = -math.inf  # (of the best epoch by the watched value)
        self.best_watched = -math.inf
        self.validation_scores = []
        self.best_params = None         # of the best validation score (early stopping)
        self.stopped = False

    def configure(self, *, sgd, learning_rate, learning_rate_init, power_t, tol,
                  n_iter_no_change, early_stopping, verbose, reset_rate):
        self.sgd, self.schedule, self.lr_init = sgd, learning_rate, learning_rate_init
        self.power_t, self.tol, self.n_iter_no_change = power_t, tol, n_iter_no_change
        self.early_stopping, self.verbose = early_stopping, verbose
        if reset_rate:
            self.lr = float(learning_rate_init)
        self.stopped = False
        self.n_iter = 0  # as scikit-learn: n_iter_ counts this call's epochs

    def learning_rate(self, i):
        return self.lr

    def rates_ahead(self, i, k):
        """The rates of the next epochs (up to ``k``) that can run before
        this rule looks at any but the last: the rule stops, or 'adaptive'
        lowers the rate, only once ``no_improvement_count`` exceeds
        ``n_iter_no_change``, which takes at least ``n_iter_no_change + 1 -
        no_improvement_count`` more epochs; until then the rate stays.
        'invscaling' changes it every epoch, and early stopping looks at
        the model every epoch: one epoch."""
        if self.early_stopping or (self.sgd and self.schedule == "invscaling"):
            return [self.lr]
        return [self.lr] * max(1, min(k, self.n_iter_no_change + 1 - self.no_improvement_count))

    def divergence_message(self, epoch, lr):
        return (f"training diverged in iteration {self.n_iter + 1}; the parameters were "
                f"restored to those before it. Try a smaller learning_rate_init than "
                f"{self.lr_init}.")

    def after_epoch(self, record, theta, rows):
        self.n_iter += 1
        self.t += rows
        if self.early_stopping:
            score = record["validation_score"]
            self.validation_scores.append(score)
            # What stopping watches: the score (scikit-learn), or a
            # "stop_score" (fastnn's early_stopping_metric="loss": -loss).
            watched = record.get("stop_score", score)
            best = getattr(self, "best_watched", self.best_validation_score)  # older pickles
            if watched < best + self.tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            if watched > best:
                self.best_watched = watched
                self.best_validation_score = score
                self.best_params = theta.copy()
        else:
            loss = record["loss"]
            if loss > self.best_loss - self.tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            self.best_loss = min(self.best_loss, loss)
        if self.sgd and self.schedule == "invscaling":
            self.lr = self.lr_init / (self.t + 1) ** self.power_t
        if self.no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if self.sgd and self.schedule == "adaptive" and self.lr > self.MIN_ADAPTIVE_LR:
                self.lr /= 5.0
                self.no_improvement_count = 0
                if self.verbose:
                    print(msg + f" Setting learning rate to {self.lr:f}")
            else:
                if self.verbose:
                    print(msg + " Stopping.")
                self.stopped = True
                return True
        return False

    def finish(self, theta):
        if self.early_stopping and self.best_params is not None:
            theta[...] = np.asarray(self.best_params)
