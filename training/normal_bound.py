"""The bound of model.json's outputs.mask.suppressWhenNormalAbove, chosen on val.

A frame whose softmax P(normal) is above the bound reports no lesion (the gateway's
src/pipeline/analyzeInstance.ts). The export takes the lowest bound on GRID at which no val
lesion image that has an outline loses it, and keeps it only if it takes the outline off at
least one normal val image; otherwise model.json gets no bound.
"""

GRID = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def choose_normal_bound(outlined, p_normal, lesion, grid=GRID):
    """outlined, p_normal, lesion: one entry per val image (has an outline at the model's
    threshold; softmax P(normal); has a lesion in truth). Returns the bound or None."""
    rows = list(zip(outlined, p_normal, lesion))
    chosen = None
    for b in sorted(grid, reverse=True):  # lower bounds drop more outlines
        if any(o and les and p > b for o, p, les in rows):
            break
        chosen = b
    if chosen is None or not any(o and not les and p > chosen for o, p, les in rows):
        return None
    return chosen


def suppressed(p_normal, bound):
    """Whether the outline of a frame with this P(normal) is dropped (None: never)."""
    return bound is not None and p_normal > bound
