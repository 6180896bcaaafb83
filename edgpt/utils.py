"""Small utilities every chapter needs: seeding, device choice, timing, showing code."""
import ast
import inspect
import os
import random
import statistics
import textwrap
import time

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


def median_ms(variants, rounds=5, threads=1):
    """{name: median milliseconds of one call} for the callables of `variants`.

    Each gets one untimed warm-up call; then every round calls each once, in
    turn, so that a busy moment of a shared machine slows all of them alike,
    and the median ignores the rounds it spoiled. The thread count is fixed
    (`threads`) while timing. The book prints these numbers and never asserts
    on them: a loaded machine may reorder them.
    """
    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for fn in variants.values():
            fn()
        times = {name: [] for name in variants}
        for _ in range(rounds):
            for name, fn in variants.items():
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(before)
    return {name: statistics.median(ms) for name, ms in times.items()}


# Every graded name and its assignment (tests/test_publish.py checks this
# against the answer cells of solutions/). In the class edition of the book
# (EDGPT_EDITION=class, `make book-class`) their code is not shown.
GRADED = {
    "encoder_decoder": ["rnn_encoder", "rnn_decoder_step", "shift_right", "greedy_decode", "beam_search"],
    "attention": ["additive_attention_scores", "masked_softmax", "attention_context"],
    "embedding_vs_encoder": ["one_hot_embed", "sinusoidal_positional_encoding"],
    "multi_head_attention": ["scaled_dot_product_attention", "split_heads", "merge_heads", "MultiHeadAttention"],
    "feed_forward": ["PositionwiseFeedForward", "ffn_num_parameters"],
    "transformer": ["EncoderLayer", "DecoderLayer", "transformer_num_parameters"],
    "causal_masking": ["causal_mask", "lm_inputs_and_targets", "CausalSelfAttention", "generate",
                       "gpt2_num_parameters"],
    "capstone": ["pack_source_target", "decoder_only_greedy", "exact_match"],
    "pretrained": ["rms_norm", "apply_rotary", "repeat_kv", "swiglu"],
}
ASSIGNMENT_OF = {name: assignment for assignment, names in GRADED.items() for name in names}


def edition():
    """"full" (the default: every piece of code is shown) or "class"."""
    value = os.environ.get("EDGPT_EDITION", "full")
    if value not in ("full", "class"):
        raise ValueError(f"EDGPT_EDITION={value!r}: it is 'full' or 'class'")
    return value


def show(obj):
    """Display the source of a function or class from this package.

    The book shows the code it runs, read from the module itself, so the page
    and the code later chapters import can never disagree. In the class
    edition a graded name shows only its signature and docstring, and where
    the student writes it; so does a class built on a graded class (the GPT's
    `CachedSelfAttention`), whose code repeats the answer's.
    """
    from IPython.display import Code

    source = inspect.getsource(obj)
    graded = [c.__name__ for c in getattr(obj, "__mro__", [obj]) if c.__name__ in ASSIGNMENT_OF]
    assignment = ASSIGNMENT_OF[graded[0]] if graded else None
    if assignment and edition() == "class":
        source = interface(source, assignment)
    return Code(source, language="python")


def interface(source, assignment):
    """`source` (one function or class) with every body replaced by `...`:
    the signatures and docstrings, and a comment naming the assignment."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=False)
            kept = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
            if not isinstance(node, ast.ClassDef) or not kept:
                kept = [ast.Expr(ast.Constant(...))]
            node.body = ([ast.Expr(ast.Constant(doc))] if doc else []) + kept
            node.decorator_list = []
    where = f"exercises/{assignment}/{assignment}.ipynb"
    return f"# You write this in the assignment `{assignment}` ({where}).\n" + ast.unparse(tree) + "\n"
