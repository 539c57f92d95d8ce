"""Co-divide and co-guess (DivideMix, Li et al. 2020): two networks that keep each other's partition honest.

With ``co_divide: True`` (yaml) :class:`~sssl_brain.method.brain.SSSLBrain`
trains a second network, the *peer*, beside the model: the same architecture
and input normalisation, its own initial weights. Every SSSL epoch the
partition pass (Eq. 3) runs once per network, and each network trains on the
partition made from the *other* network's losses (co-divide), so a network
does not confirm its own memorised mistakes; U's guess (Eq. 4) is the mean of
both networks' predictions (co-guess). During the warm-up both train on the
inherited labels. The model serves (validation, selection, predictions,
export), so the exported model stays one network; the peer is a training
aid (docs/method.md, "Co-divide"). The peer has its own optimiser and its own random
streams (:class:`PeerStreams`), so the model's steps, gradient clipping and random numbers are
those of a run without the peer: the two runs differ only in the partitions and guesses the
model gets after the warm-up.
"""

import copy

import torch


def make_peer(model, seed):
    """The peer of ``model``: a deep copy (architecture, buffers such as the input normalisation) whose
    weights are drawn afresh from ``seed``; the global random state is left as it was.

    The weights are re-drawn with the model's own ``init_weights()`` where it has one
    (:class:`sssl_brain.lobes.vgg16.VGG16`), else with every submodule's ``reset_parameters()``.

    Arguments
    ---------
    model : torch.nn.Module
        The trained network.
    seed : int
        Seed of the peer's initial weights.

    Returns
    -------
    torch.nn.Module
        A new module with the same structure and buffers and other weights.

    Example
    -------
    >>> model = torch.nn.Linear(3, 2)
    >>> peer = make_peer(model, seed=1)
    >>> peer.weight.shape == model.weight.shape, bool(torch.equal(peer.weight, model.weight))
    (True, False)
    """
    peer = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if hasattr(peer, "init_weights"):
            peer.init_weights()
        else:
            for module in peer.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return peer


def crossed(partition_of_model, partition_of_peer):
    """Co-divide: which partition each network trains on, ``(model's, peer's)``.

    The model trains on the partition made from the peer's losses and the peer on the one made from
    the model's losses.

    Arguments
    ---------
    partition_of_model, partition_of_peer : object
        The partition made from the model's losses, and the one made from the peer's losses.

    Returns
    -------
    tuple
        ``(partition_of_peer, partition_of_model)``.

    Example
    -------
    >>> crossed("from the model's losses", "from the peer's losses")
    ("from the peer's losses", "from the model's losses")
    """
    return partition_of_peer, partition_of_model


class PeerStreams:
    """The peer's own random streams: dropout (torch's generator of the device) and mixup.

    Training the peer inside :meth:`run` draws nothing from the model's streams, so with
    ``co_divide`` the model sees the same dropout masks and mixup draws as without it.

    Arguments
    ---------
    device : str or torch.device
        The training device (its torch generator is swapped: CPU, or the CUDA device).

    Example
    -------
    >>> streams = PeerStreams("cpu")
    >>> streams.seed(3)
    >>> before = torch.get_rng_state()
    >>> a = streams.run(lambda: torch.rand(2))
    >>> same = torch.rand(2, generator=torch.Generator().manual_seed(3))
    >>> torch.equal(torch.get_rng_state(), before), torch.equal(a, same)
    (True, True)
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self.mix_generator = torch.Generator()
        self.state = None

    def seed(self, seed):
        """Seeds both streams (once per epoch, like the model's)."""
        self.mix_generator.manual_seed(int(seed))
        generator = torch.Generator(device=self.device) if self.device.type == "cuda" else torch.Generator()
        self.state = generator.manual_seed(int(seed)).get_state()

    def run(self, fn):
        """``fn()`` with the device's random state swapped for the peer's, restored afterwards."""
        cuda = self.device.type == "cuda"
        index = self.device.index if self.device.index is not None else (torch.cuda.current_device() if cuda
                                                                          else None)
        with torch.random.fork_rng(devices=[index] if cuda else []):
            if cuda:
                torch.cuda.set_rng_state(self.state, index)
            else:
                torch.set_rng_state(self.state)
            out = fn()
            self.state = torch.cuda.get_rng_state(index) if cuda else torch.get_rng_state()
        return out
