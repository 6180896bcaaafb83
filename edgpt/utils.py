"""Small utilities every chapter needs: seeding, device choice, showing code."""
import inspect
import random

import torch


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python and PyTorch so a notebook prints the same numbers every run.

    Returns a CPU generator seeded the same way, for code that wants its own
    stream of random numbers (data generation) independent of model init.
    """
    random.seed(seed)
    torch.manual_seed(seed)
    # Deterministic kernels where PyTorch has them; warn instead of failing
    # where it does not, so the same notebook still runs on CUDA.
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def get_device() -> torch.device:
    """`cuda` when a GPU is present, else `cpu`: every chapter runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def show(obj):
    """Display the source of a function or class from this package.

    The book shows the code it runs, read from the module itself, so the page
    and the code later chapters import can never disagree.
    """
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")
