"""A plain training loop with a progress bar, shared by every chapter."""
import torch
from torch import nn
from tqdm import tqdm


def train(model, make_batch, steps, lr=3e-3, desc="training", device=None, warmup=None):
    """Train `model` with Adam on batches from `make_batch(step) -> (x, y)`.

    `model(x)` returns logits [..., V] and `y` holds class ids [...]; the loss
    is the mean cross-entropy over every position whose target is not -100.
    With `warmup`, the learning rate rises linearly over that many steps, then
    falls linearly to 0 at the last step; without it, it stays `lr`. Returns
    the loss of each step, for a loss curve.
    """
    device = device or next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = None if warmup is None else torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / warmup) * (1.0 - step / steps))
    loss_fn = nn.CrossEntropyLoss()  # ignore_index=-100 by default
    losses = []
    model.train()
    # Plain-text tqdm: it works in a terminal, in Jupyter and in the built book
    # (the widget version would need JavaScript from a CDN).
    bar = tqdm(range(steps), desc=desc, mininterval=1.0, ncols=80)
    for step in bar:
        x, y = (t.to(device) for t in make_batch(step))
        logits = model(x)
        loss = loss_fn(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model, x, y):
    """Share of positions where the arg-max of `model(x)` equals `y`."""
    model.eval()
    return (model(x).argmax(-1) == y).float().mean().item()
