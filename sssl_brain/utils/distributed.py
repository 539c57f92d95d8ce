"""A pass over a dataset split across DDP ranks, gathered back in dataset order.

SpeechBrain's ``ddp_all_reduce`` sums and it has no gather helper, so these two functions
shard the positions and put the gathered rows back where they belong. Without DDP they are
the identity on one process.
"""

import numpy as np
import torch


def shard_positions(n):
    """The positions of ``n`` items this rank handles: ``rank, rank + world, ...``.

    Arguments
    ---------
    n : int
        Number of items (segments) in the dataset.

    Returns
    -------
    list of int
        Every position when there is no process group.

    Example
    -------
    >>> shard_positions(4)
    [0, 1, 2, 3]
    """
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = torch.distributed.get_rank() if world > 1 else 0
    return list(range(rank, n, world))


def gather_in_order(order, n, *rows):
    """Every rank's rows, gathered and placed at their dataset positions (float64 arrays).

    Arguments
    ---------
    order : torch.Tensor
        (M,) dataset positions of this rank's rows.
    n : int
        Size of the dataset (the gathered positions cover ``0 .. n-1``).
    *rows : torch.Tensor
        Tensors whose first dimension is M (e.g. losses (M,) and probabilities (M, K)).

    Returns
    -------
    list of numpy.ndarray
        One float64 array per tensor of ``rows``, first dimension ``n``, in dataset order.

    Example
    -------
    >>> losses, probs = gather_in_order(torch.tensor([2, 0, 1]), 3, torch.tensor([2.0, 0.0, 1.0]),
    ...                                 torch.tensor([[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]]))
    >>> losses.tolist(), probs[0].tolist(), probs.dtype
    ([0.0, 1.0, 2.0], [1.0, 0.0], dtype('float64'))
    """
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, (order, *rows))
        order, *rows = (torch.cat([g[i] for g in gathered]) for i in range(len(rows) + 1))
    out = []
    for row in rows:
        full = np.zeros((n, *row.shape[1:]), dtype=np.float64)
        full[order.numpy()] = row.double().numpy()
        out.append(full)
    return out
