"""Learning-rate schedules for :meth:`fastnn.Network.fit`.

A schedule maps the number of epochs completed so far (0 for the first
epoch) and the initial rate ``lr`` to the rate used for the next epoch; the
rate is constant within an epoch. Pass an instance, one of the names
``"constant"``, ``"step"``, ``"invscaling"``, ``"cosine"`` (default
parameters), or any callable ``f(epoch, lr) -> float``.
"""
import math

from . import validation as V

__all__ = ["Constant", "Step", "InvScaling", "Cosine", "get", "NAMES"]


class Constant:
    def __call__(self, epoch, lr):
        return lr

    def __repr__(self):
        return "Constant()"


class Step:
    """``lr * gamma ** (epoch // step_size)``: multiply by ``gamma`` every
    ``step_size`` epochs."""

    def __init__(self, step_size=10, gamma=0.1):
        self.step_size = V.check_int("step_size", step_size, 1)
        self.gamma = V.check_float("gamma", gamma, 0, 1, low_open=True)

    def __call__(self, epoch, lr):
        return lr * self.gamma ** (epoch // self.step_size)

    def __repr__(self):
        return f"Step(step_size={self.step_size}, gamma={self.gamma})"


class InvScaling:
    """``lr / (epoch + 1) ** power_t``."""

    def __init__(self, power_t=0.5):
        self.power_t = V.check_float("power_t", power_t, 0)

    def __call__(self, epoch, lr):
        return lr / (epoch + 1) ** self.power_t

    def __repr__(self):
        return f"InvScaling(power_t={self.power_t})"


class Cosine:
    """Cosine annealing from ``lr`` to ``min_lr`` over ``total_epochs``
    (default: the ``epochs`` of the ``fit`` call), then ``min_lr``."""

    def __init__(self, total_epochs=None, min_lr=0.0):
        if total_epochs is not None:
            total_epochs = V.check_int("total_epochs", total_epochs, 1)
        self.total_epochs = total_epochs
        self.min_lr = V.check_float("min_lr", min_lr, 0)

    def __call__(self, epoch, lr):
        e = min(epoch, self.total_epochs)
        return self.min_lr + 0.5 * (lr - self.min_lr) * (1 + math.cos(math.pi * e / self.total_epochs))

    def __repr__(self):
        return f"Cosine(total_epochs={self.total_epochs}, min_lr={self.min_lr})"


NAMES = {"constant": Constant, "step": Step, "invscaling": InvScaling, "cosine": Cosine}


def get(schedule, epochs):
    """A callable schedule from a name, an instance or a callable; a
    ``Cosine`` without ``total_epochs`` spans ``epochs``."""
    if schedule is None:
        return Constant()
    if isinstance(schedule, str):
        V.check_choice("lr_schedule", schedule, tuple(NAMES))
        schedule = NAMES[schedule]()
    if isinstance(schedule, Cosine) and schedule.total_epochs is None:
        schedule = Cosine(max(1, epochs), schedule.min_lr)
    if not callable(schedule):
        raise TypeError(f"lr_schedule must be a name {tuple(NAMES)} or a callable "
                        f"f(epoch, lr), got {type(schedule).__name__}")
    return schedule
