"""The model wrapper of the SSSL step: everything one step needs in a single forward call."""

import torch


class SSSLForward(torch.nn.Module):
    """Runs everything one SSSL step needs in a single forward call.

    A single call keeps DDP's gradient reduction correct (every parameter is
    used through the wrapped module). The two R-Drop passes share one pass
    through the convolutional trunk: the trunk has no dropout, so in train
    mode both passes would compute the same trunk output for the same batch.
    U's guesses (Eq. 4) are not computed here: the Brain takes them from the
    eval-mode serving model (:meth:`sssl_brain.method.brain.SSSLBrain.guess_probs`),
    the same way whether R-Drop is on or off.

    Arguments
    ---------
    model : torch.nn.Module
        A model with ``trunk(x)`` and ``head(h)`` (e.g. :class:`sssl_brain.lobes.vgg16.VGG16`).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, u_x=None):
        """Logits of ``x``; with ``u_x``, also the two R-Drop dropout passes of U (Eq. 8).

        Arguments
        ---------
        x : torch.Tensor
            (Mixed) batch, (B, T, F).
        u_x : torch.Tensor, optional
            The unmixed U samples of the batch.

        Returns
        -------
        torch.Tensor or dict
            Logits of ``x`` alone, or a dict with ``logits``, ``u_logits_a`` and ``u_logits_b``.
        """
        if u_x is None:
            return self.model(x)
        # one trunk pass over the mixed batch and the U samples (a single batch,
        # so batch norm never sees a lone sample), then the head per use
        h = self.model.trunk(torch.cat([x, u_x]))
        h_x, h_u = h[: x.shape[0]], h[x.shape[0]:]
        return {"logits": self.model.head(h_x), "u_logits_a": self.model.head(h_u),
                "u_logits_b": self.model.head(h_u)}
