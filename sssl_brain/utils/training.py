"""Training-loop helpers the Brain calls: the epoch's learning rate and a device-synchronised clock."""

import time

import torch
from speechbrain.nnet.schedulers import update_learning_rate


def set_epoch_lr(optimizer, scheduler, epoch):
    """Sets this epoch's learning rate from ``scheduler`` (a function of the epoch alone: resumes match).

    Arguments
    ---------
    optimizer : torch.optim.Optimizer or None
        The optimiser whose learning rate is set (None: nothing to set).
    scheduler : callable or None
        SpeechBrain's per-epoch scheduler (``lr_annealing``): ``scheduler(epoch) -> (lr, next_lr)``;
        None keeps the optimiser's rate.
    epoch : int
        The epoch about to run.

    Returns
    -------
    float or None
        The learning rate of the epoch (None without an optimiser).

    Example
    -------
    >>> from speechbrain.nnet.schedulers import LinearScheduler
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> round(set_epoch_lr(opt, LinearScheduler(1e-3, 1e-4, 10), 10), 6)
    0.0001
    >>> round(opt.param_groups[0]["lr"], 6)
    0.0001
    """
    if optimizer is None:
        return None
    if scheduler is None:
        return float(optimizer.param_groups[0]["lr"])
    lr, _ = scheduler(int(epoch))
    update_learning_rate(optimizer, lr)
    return float(lr)


def synchronized_clock(device):
    """``time.perf_counter()`` once the queued work of ``device`` is done (CUDA runs asynchronously).

    Arguments
    ---------
    device : str or torch.device
        The device whose work is timed.

    Returns
    -------
    float
        Seconds, as ``time.perf_counter()``.

    Example
    -------
    >>> t0 = synchronized_clock("cpu")
    >>> synchronized_clock("cpu") >= t0
    True
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
