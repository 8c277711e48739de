"""Shared recurrent layers of seqapps, written from their equations.

Cells (Keras cell contract, weight-compatible with the Keras built-ins):
    SimpleRNNCell, LSTMCell, GRUCell
Layers:
    RNN (keras.layers.RNN with a fast loop for these cells), SimpleRNN, LSTM, GRU
    sequence_projection (context: trace the export graph, see seqapps.layers.base)
    own_loops_for_xla (a model's recurrent layers skip cuDNN, so that XLA compiles them)
Attention:
    BahdanauAttention (additive), LuongAttention (multiplicative)
    mask_bias (keeps padded positions out of a softmax or a max, in any float dtype)
"""

from seqapps.layers.attention import BahdanauAttention, LuongAttention, mask_bias
from seqapps.layers.base import RNN, RecurrentCell, RecurrentLayer, own_loops_for_xla, sequence_projection
from seqapps.layers.gru import GRU, GRUCell
from seqapps.layers.lstm import LSTM, LSTMCell
from seqapps.layers.simple_rnn import SimpleRNN, SimpleRNNCell

CELLS = {"rnn": SimpleRNNCell, "simple_rnn": SimpleRNNCell, "lstm": LSTMCell, "gru": GRUCell}
ATTENTION = {
    "additive": BahdanauAttention,
    "bahdanau": BahdanauAttention,
    "multiplicative": LuongAttention,
    "luong": LuongAttention,
}


def make_cell(kind: str, units: int, **kwargs):
    """Cell by name: ``"rnn"``/``"simple_rnn"``, ``"lstm"`` or ``"gru"``."""
    try:
        cls = CELLS[kind.lower()]
    except KeyError:
        raise ValueError(f"Unknown cell type {kind!r}; choose one of {sorted(CELLS)}.") from None
    return cls(units, **kwargs)


def make_attention(kind: str, units: int):
    """Attention by name: ``"additive"`` (Bahdanau) or ``"multiplicative"`` (Luong, general score)."""
    key = kind.lower()
    if key not in ATTENTION:
        raise ValueError(f"Unknown attention {kind!r}; choose one of {sorted(ATTENTION)}.")
    return BahdanauAttention(units) if ATTENTION[key] is BahdanauAttention else LuongAttention()


__all__ = [
    "RNN",
    "RecurrentCell",
    "RecurrentLayer",
    "SimpleRNNCell",
    "SimpleRNN",
    "LSTMCell",
    "LSTM",
    "GRUCell",
    "GRU",
    "BahdanauAttention",
    "LuongAttention",
    "mask_bias",
    "make_cell",
    "make_attention",
    "sequence_projection",
    "own_loops_for_xla",
    "CELLS",
]
