"""Grading of the `feed_forward` assignment with the course's grader (see
tests/test_multi_head_attention.py for what each test promises)."""
from grading import catalog_tests

ASSIGNMENT = "feed_forward"
MAX_POINTS = 7.0

FFN = "ffn"
COUNT = "ffn_num_parameters"

# name -> (answer cell, [(solution text, replaced by)], test cell that must
# lose its points, words its failure message must contain)
WRONG = {
    "ffn_gelu_tanh_approximation": (FFN, [('"gelu": nn.GELU}', '"gelu": lambda: nn.GELU(approximate="tanh")}')],
                                    "test_ffn_hidden", "tanh approximation"),
    "ffn_no_activation": (FFN, [("self.linear2(self.act(self.linear1(x)))", "self.linear2(self.linear1(x))")],
                          "test_ffn_visible", "forward should be linear2(relu(linear1(x)))"),
    "ffn_activation_after_linear2": (FFN, [("self.linear2(self.act(self.linear1(x)))",
                                            "self.act(self.linear2(self.linear1(x)))")],
                                     "test_ffn_hidden", "applied after linear2"),
    "ffn_accepts_any_activation": (FFN, [
        ("        if activation not in activations:\n"
         "            raise ValueError(f\"activation must be 'relu' or 'gelu', got {activation!r}\")\n", ""),
        ("activations[activation]()", "activations.get(activation, nn.ReLU)()"),
    ], "test_ffn_visible", "should raise ValueError"),
    "ffn_relu_for_gelu": (FFN, [('"gelu": nn.GELU}', '"gelu": nn.ReLU}')],
                          "test_ffn_hidden", "used the other activation"),
    "count_without_biases": (COUNT, [("(d_model * d_ff + d_ff) + (d_ff * d_model + d_model)", "2 * d_model * d_ff")],
                             "test_ffn_num_parameters_hidden", "biases are not counted"),
    "count_first_layer_only": (COUNT, [(" + (d_ff * d_model + d_model)", "")],
                               "test_ffn_num_parameters_hidden", "only linear1 is counted"),
    "count_swapped_bias_sizes": (COUNT, [("(d_model * d_ff + d_ff) + (d_ff * d_model + d_model)",
                                          "(d_model * d_ff + d_model) + (d_ff * d_model + d_model)")],
                                 "test_ffn_num_parameters_hidden", "biases have the wrong sizes"),
}

CORRECT = {
    "functional_with_own_activation_names": {
        FFN: '''
class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        if activation == "relu":
            self.fn = F.relu
        elif activation == "gelu":
            self.fn = lambda t: 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0)))  # exact GELU by hand
        else:
            raise ValueError("unknown activation " + str(activation))
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        h = F.linear(x, self.linear1.weight, self.linear1.bias)
        return F.linear(self.fn(h), self.linear2.weight, self.linear2.bias)
''',
        COUNT: '''
def ffn_num_parameters(d_model, d_ff):
    weights = [d_model * d_ff, d_ff * d_model]
    biases = [d_ff, d_model]
    return int(sum(weights) + sum(biases))
''',
    },
    "per_position_loop_and_warning": {
        FFN: '''
import warnings

class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(activation)
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        warnings.warn("looping over positions one by one is slow", UserWarning)
        flat = x.reshape(-1, x.shape[-1])
        rows = []
        for row in flat:  # one position at a time: same result, only slower
            h = self.linear1(row)
            h = torch.relu(h) if self.activation == "relu" else F.gelu(h)
            rows.append(self.linear2(h))
        return torch.stack(rows).reshape(x.shape)
''',
        COUNT: '''
def ffn_num_parameters(d_model, d_ff):
    return 2 * d_model * d_ff + d_model + d_ff
''',
    },
}


globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT, items=(FFN, COUNT), time_limit=90,
                              compare_with_nbgrader=True))
