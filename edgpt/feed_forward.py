"""The position-wise feed-forward network of the chapter `feed_forward`."""
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}  # nn.GELU() is the exact (erf) GELU


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = linear2(act(linear1(x))), applied to every position on its own."""

    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)   # widen: d_model -> d_ff
        self.act = ACTIVATIONS[activation]()
        self.linear2 = nn.Linear(d_ff, d_model)   # back: d_ff -> d_model

    def forward(self, x):
        # nn.Linear acts on the last dimension only, so every position of
        # x [..., d_model] is transformed independently by the same weights.
        return self.linear2(self.act(self.linear1(x)))


def ffn_num_parameters(d_model, d_ff):
    """Weights and biases of both linear maps: 2 * d_model * d_ff + d_ff + d_model."""
    return (d_model * d_ff + d_ff) + (d_ff * d_model + d_model)
