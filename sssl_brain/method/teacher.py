"""The mean teacher: an exponential moving average of the model's weights and batch-norm buffers.

With ``ema_decay`` set (yaml), :class:`~sssl_brain.method.brain.SSSLBrain` keeps
a :class:`MeanTeacher` beside the trained model (the student), updated after
every optimiser step, and the teacher is the model that serves: the
partition pass (Eq. 3), U's guesses (Eq. 4), validation and model
selection, the predictions of stage 2 and the export. Averaging the weights
damps the epoch-to-epoch swings of a noisy-label run and the memorisation
of the last epochs (Tarvainen & Valpola, "Mean teachers are better role
models", NeurIPS 2017; docs/method.md, "Mean teacher"). The batch-norm running
statistics are averaged with the weights (``use_buffers=True``), so the
teacher's statistics follow its own weights rather than the student's last
batches.

The decay ramps up: update ``n`` uses ``min(ema_decay, (1 + n) / (10 + n))``
(:func:`ema_decay_at`, the ``num_updates`` ramp of TensorFlow's
``ExponentialMovingAverage``), so the early teacher follows the fast-moving
student closely (an average window of about n / 9 updates) and is not held
back by the random initial weights. (The mean-teacher code's ramp
``1 - 1 / (n + 1)``, a plain mean of all students so far, left the teacher
near chance for the first 4-5 epochs of the known-noise benchmark and still
behind the student when the first partition was made: docs/results.md.)
"""

import functools

import torch
from torch.optim.swa_utils import AveragedModel

#: Prefix of the averaged module's entries in :class:`MeanTeacher`'s state dict.
_MODULE_PREFIX = "module."
#: The teacher's name among the checkpointer's recoverables, and its file in each checkpoint folder.
TEACHER_RECOVERABLE = "teacher"
TEACHER_FILE = f"{TEACHER_RECOVERABLE}.ckpt"
#: The teacher of ``co_divide``'s peer among the recoverables (a training aid, like the peer: not exported).
PEER_TEACHER_RECOVERABLE = "peer_teacher"


def ema_decay_at(decay, n_averaged):
    """The decay of the ``n_averaged``-th update: ``min(decay, (1 + n) / (10 + n))`` (the ramp).

    Arguments
    ---------
    decay : float
        ``ema_decay`` of the yaml, in [0, 1).
    n_averaged : int
        Updates averaged so far (at least 1: torch's first update copies the model).

    Returns
    -------
    float
        The weight of the average; ``1 - decay`` goes to the current model.

    Example
    -------
    >>> round(ema_decay_at(0.99, 1), 4), round(ema_decay_at(0.99, 90), 4), ema_decay_at(0.99, 1000)
    (0.1818, 0.91, 0.99)
    """
    n = int(n_averaged)
    return min(float(decay), (1.0 + n) / (10.0 + n))


def ema_average(averaged, current, n_averaged, decay):
    """One EMA update, in place: ``a <- d * a + (1 - d) * c`` for each pair, d = :func:`ema_decay_at`.

    Integer tensors (batch norm's ``num_batches_tracked``) take the current value.
    The ``multi_avg_fn`` of :class:`torch.optim.swa_utils.AveragedModel` (tensors grouped by dtype).

    Arguments
    ---------
    averaged : list of torch.Tensor
        The teacher's tensors (updated in place).
    current : list of torch.Tensor
        The student's tensors, same order.
    n_averaged : torch.Tensor or int
        Updates averaged so far.
    decay : float
        ``ema_decay``.

    Example
    -------
    >>> a, n = [torch.tensor([1.0, 0.0])], [torch.tensor(3)]
    >>> ema_average(a, [torch.tensor([0.0, 1.0])], 1000, 0.9); a
    [tensor([0.9000, 0.1000])]
    >>> ema_average(n, [torch.tensor(7)], 5, 0.9); n
    [tensor(7)]
    """
    if not averaged:
        return
    if not averaged[0].is_floating_point():
        torch._foreach_copy_(averaged, current)
        return
    torch._foreach_lerp_(averaged, current, 1.0 - ema_decay_at(decay, n_averaged))


class MeanTeacher(AveragedModel):
    """The EMA copy of a model (weights and batch-norm buffers), always in eval mode.

    Arguments
    ---------
    model : torch.nn.Module
        The student (copied; the copy is averaged by :meth:`update_parameters` after each optimiser step).
    decay : float
        ``ema_decay`` in [0, 1); the ramp of :func:`ema_decay_at` applies.

    Example
    -------
    >>> student = torch.nn.Linear(1, 1, bias=False)
    >>> _ = torch.nn.init.zeros_(student.weight)
    >>> teacher = MeanTeacher(student, decay=0.1)
    >>> for value in (2.0, 4.0, 8.0):
    ...     _ = student.weight.data.fill_(value)
    ...     teacher.update_parameters(student)
    >>> round(teacher.module.weight.item(), 4), teacher.training   # 2, 0.1 * 2 + 0.9 * 4, 0.1 * 3.8 + 0.9 * 8
    (7.58, False)
    """

    def __init__(self, model, decay):
        super().__init__(model, multi_avg_fn=functools.partial(ema_average, decay=float(decay)),
                         use_buffers=True)
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode=True):
        """Stays in eval mode (no dropout, running batch-norm statistics) whatever ``mode`` says."""
        return super().train(False)


def teacher_model_state(state):
    """The averaged model's own state dict from a saved :class:`MeanTeacher` state (for the export).

    Example
    -------
    >>> teacher_model_state({"n_averaged": torch.tensor(3), "module.weight": torch.ones(1)})
    {'weight': tensor([1.])}
    """
    return {k[len(_MODULE_PREFIX):]: v for k, v in state.items() if k.startswith(_MODULE_PREFIX)}
