"""Diagnostic plots of the clean/noisy partition (docs/output_contract.md, "partition.csv").

Figures are drawn on a ``matplotlib.figure.Figure`` with the Agg canvas (no
pyplot, no global backend change, safe without a display) and written
atomically: rendered to memory, then saved with
:func:`sssl_brain.utils.io_utils.atomic_write_bytes` (temporary file + ``os.replace``).
"""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sssl_brain.method.sssl import normalize_losses
from sssl_brain.utils.errors import DataError
from sssl_brain.utils.io_utils import atomic_write_bytes


def _save(fig, path):
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def plot_partition_histogram(losses, result, path, epoch, title=None, bins=50):
    """Histogram of the normalised losses with the fitted mixture of Eq. 3 (one epoch).

    Bars are stacked by partition (X labeled / U unlabeled); the two weighted
    Gaussian components (global fit) or each class's components (per-class
    fit) are drawn as densities scaled to the histogram's counts; for a
    global fit the clean posterior w(loss) is drawn on a second axis with the
    threshold tau. A fallback is named in the title.

    Arguments
    ---------
    losses : array-like
        Raw per-segment losses, shape (N,), as passed to
        :func:`sssl_brain.method.partition.partition_segments`.
    result : PartitionResult
        The partition of these losses.
    path : str
        PNG file to write (folder created if needed).
    epoch : int
        Epoch number, for the title.
    title : str, optional
        Title prefix (default "Partition").
    bins : int
        Histogram bins over [0, 1].

    Example
    -------
    >>> import os, tempfile
    >>> from sssl_brain.method.partition import partition_segments
    >>> losses = np.r_[np.linspace(0, 0.2, 30), np.linspace(0.8, 1, 10)]
    >>> labels = np.tile([0, 1], 20)
    >>> p = os.path.join(tempfile.mkdtemp(), "epoch_3.png")
    >>> plot_partition_histogram(losses, partition_segments(losses, labels, 2), p, epoch=3)
    >>> open(p, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    x = normalize_losses(np.asarray(losses, dtype=np.float64).reshape(-1))
    clean = np.asarray(result.clean, dtype=bool)
    if clean.shape != x.shape:
        raise DataError(f"plot_partition_histogram: {x.size} losses but a partition of {clean.size} segments")
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    width = edges[1] - edges[0]
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(
        [x[clean], x[~clean]],
        bins=edges,
        stacked=True,
        color=["tab:blue", "tab:orange"],
        label=[f"X labeled ({int(clean.sum())})", f"U unlabeled ({int((~clean).sum())})"],
        alpha=0.75,
    )
    grid = np.linspace(0.0, 1.0, 400)
    if result.per_class and result.class_gmms:
        for k, params in enumerate(result.class_gmms):
            if params is None:
                continue
            n_k = float(result.class_counts[k]) if k < len(result.class_counts) else 0.0
            dens = params.component_densities(grid) * n_k * width
            ax.plot(grid, dens.sum(axis=0), lw=1.3, color=f"C{(k + 2) % 10}", label=f"class {k} mixture")
    elif result.gmm is not None:
        dens = result.gmm.component_densities(grid) * x.size * width
        low, high = result.gmm.means
        ax.plot(grid, dens[0], color="tab:green", lw=1.5, label=f"clean comp. (mean {low:.2f})")
        ax.plot(grid, dens[1], color="tab:red", lw=1.5, label=f"noisy comp. (mean {high:.2f})")
        ax2 = ax.twinx()
        w_grid = result.gmm.clean_posterior(grid)
        ax2.plot(grid, w_grid, color="k", lw=1.0, ls="--", label="w (clean posterior)")
        ax2.axhline(result.tau, color="gray", lw=0.8, ls=":", label=f"tau = {result.tau:g}")
        ax2.set_ylim(0.0, 1.05)
        ax2.set_ylabel("w")
        ax2.legend(loc="center right", fontsize=8)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("normalised loss")
    ax.set_ylabel("segments")
    ax.legend(loc="upper right", fontsize=8)
    head = f"{title or 'Partition'}, epoch {epoch}: |X|={result.n_clean}, |U|={result.n_noisy}"
    if result.per_class:
        head += " (per class)"
    if result.fallback:
        head += f"\nfallback: {result.fallback}"
    ax.set_title(head, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_clean_precision(epochs, precision, recall, path):
    """Precision and recall of X (against segment truth) per epoch, as lines.

    None values (undefined, e.g. an empty X) are left as gaps.

    Arguments
    ---------
    epochs : sequence of int
    precision : sequence of float or None
    recall : sequence of float or None
    path : str
        PNG file to write.

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "precision.png")
    >>> plot_clean_precision([1, 2, 3], [0.8, None, 0.9], [0.7, 0.75, 0.8], p)
    >>> os.path.getsize(p) > 0
    True
    """
    if not len(epochs) == len(precision) == len(recall):
        raise DataError(
            f"plot_clean_precision: {len(epochs)} epochs, {len(precision)} precision and "
            f"{len(recall)} recall values"
        )

    def as_float(values):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)

    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(list(epochs), as_float(precision), marker="o", label="precision of X")
    ax.plot(list(epochs), as_float(recall), marker="s", label="recall of X")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("fraction")
    ax.set_title("Clean set X vs segment truth", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
