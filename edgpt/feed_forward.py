"""The position-wise feed-forward network of the chapter `feed_forward`."""
from torch import nn

class PositionwiseFeedForward(nn.Module):
    """FFN(x) = linear2(act(linear1(x))), applied to every position on its own;
    `activation` "relu" or "gelu" (nn.GELU(), the exact erf form)."""

    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        activations = {"relu": nn.ReLU, "gelu": nn.GELU}
        if activation not in activations:
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.act = activations[activation]()
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        # nn.Linear acts on the last dimension only, so every position of
        # x [..., d_model] is transformed independently by the same weights.
        return self.linear2(self.act(self.linear1(x)))


def ffn_num_parameters(d_model, d_ff):
    """Weights and biases of both linear maps: 2 * d_model * d_ff + d_ff + d_model."""
    return (d_model * d_ff + d_ff) + (d_ff * d_model + d_model)
