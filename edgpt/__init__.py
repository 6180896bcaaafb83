"""Helpers shared by the chapters of "Encoder-Decoder vs GPT".

Each chapter's book page imports the finished building blocks from here, so a
later chapter reuses exactly the code an earlier chapter explained.
"""
from edgpt.utils import get_device, median_ms, seed_everything, show

__all__ = ["get_device", "median_ms", "seed_everything", "show"]
