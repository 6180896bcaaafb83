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


# Fonts with Chinese glyphs, most likely first: Debian's fonts-wqy-microhei
# (what the course's CI installs), Noto/Source Han, and the usual system fonts
# of macOS and Windows.
CJK_FONT_NAMES = (
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC",
    "Source Han Sans SC", "Source Han Sans CN", "PingFang SC", "Heiti SC", "STHeiti",
    "Microsoft YaHei", "SimHei", "Droid Sans Fallback", "AR PL UMing CN",
)


def cjk_font_family():
    """Name of an installed font that can draw Chinese characters, or None.

    Matplotlib keeps its list of fonts in a cache; a font installed after the
    cache was written is missing from it, so when no CJK font is listed the
    list is rebuilt once and the fonts it finds are added to the one in use.
    """
    from matplotlib import font_manager

    def listed():
        names = {f.name for f in font_manager.fontManager.ttflist}
        return next((n for n in CJK_FONT_NAMES if n in names), None)

    name = listed()
    if name is None and not getattr(cjk_font_family, "_rebuilt", False):
        cjk_font_family._rebuilt = True
        fresh = font_manager._load_fontmanager(try_read_cache=False)
        known = {f.fname for f in font_manager.fontManager.ttflist}
        for font in fresh.ttflist:
            if font.name in CJK_FONT_NAMES and font.fname not in known:
                # In place: the backends hold a reference to this very object.
                font_manager.fontManager.addfont(font.fname)
        name = listed()
    return name
