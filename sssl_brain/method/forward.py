"""The model wrapper of the SSSL step: everything one step needs in a single forward call."""

import torch


class SSSLForward(torch.nn.Module):
    """Runs everything one SSSL step needs in a single forward call.

    A single call keeps DDP's gradient reduction correct (every parameter is
    used through the wrapped module). The two R-Drop passes share one pass
    through the convolutional trunk: the trunk has no dropout, so in train
    mode both passes would compute the same trunk output for the same batch.

    Arguments
    ---------
    model : torch.nn.Module
        A model with ``trunk(x)`` and ``head(h)`` (e.g. :class:`sssl_brain.lobes.vgg16.VGG16`).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, u_x=None, rdrop=True):
        """Logits of ``x``; with ``u_x``, also the U predictions and R-Drop logits.

        Arguments
        ---------
        x : torch.Tensor
            (Mixed) batch, (B, T, F).
        u_x : torch.Tensor, optional
            The unmixed U samples of the batch.
        rdrop : bool
            Compute the two dropout passes of U (lambda > 0).

        Returns
        -------
        torch.Tensor or dict
            Logits of ``x`` alone, or a dict with ``logits``, ``u_probs``
            (no grad, dropout off), ``u_logits_a`` and ``u_logits_b``.
        """
        if u_x is None:
            return self.model(x)
        if not rdrop:
            with torch.no_grad():  # the model's prediction in eval mode (no dropout, running BN stats)
                was_training = self.model.training
                self.model.eval()
                u_probs = torch.softmax(self.model(u_x).float(), dim=-1)
                self.model.train(was_training)
            return {"logits": self.model(x), "u_probs": u_probs, "u_logits_a": None, "u_logits_b": None}
        # one trunk pass over the mixed batch and the U samples (a single batch,
        # so batch norm never sees a lone sample), then the head per use
        h = self.model.trunk(torch.cat([x, u_x]))
        h_x, h_u = h[: x.shape[0]], h[x.shape[0]:]
        with torch.no_grad():
            u_probs = _eval_head_probs(self.model, h_u.detach())
        return {"logits": self.model.head(h_x), "u_probs": u_probs,
                "u_logits_a": self.model.head(h_u), "u_logits_b": self.model.head(h_u)}


def _eval_head_probs(model, h):
    """Class probabilities of the head with its dropout switched off (no grad)."""
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    states = [m.training for m in dropouts]
    for m in dropouts:
        m.eval()
    try:
        return torch.softmax(model.head(h).float(), dim=-1)
    finally:
        for m, s in zip(dropouts, states):
            m.train(s)
