"""Plots the chapters share: attention heat maps and curves."""
import matplotlib.pyplot as plt


def plot_attention(weights, x_labels=None, y_labels=None, title=None, ax=None):
    """Heat map of one attention matrix [Tq, Tk]: rows are queries, columns keys."""
    weights = weights.detach().cpu()
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0)
    Tq, Tk = weights.shape
    ax.set_xticks(range(Tk), x_labels if x_labels is not None else range(Tk))
    ax.set_yticks(range(Tq), y_labels if y_labels is not None else range(Tq))
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
