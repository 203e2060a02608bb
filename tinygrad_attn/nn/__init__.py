"""``ta.nn``: layers and models, as ``torch.nn``.

A model is a ``Module`` whose attributes are ``Parameter``s and other Modules; ``nn.functional`` (the
same module as ``ta.functional``) holds the stateless functions the layers call, ``nn.init`` the weight
initialisers and ``nn.utils`` gradient clipping. Constructor arguments, defaults, mask conventions and
``state_dict`` names follow PyTorch, so PyTorch model code and weights port over.
"""

from .. import functional
from . import init, utils
from .activation import GELU, Identity, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention
from .dropout import Dropout
from .embedding import Embedding
from .kv_cache import DecoderCache, KVCache
from .linear import Linear
from .loss import CrossEntropyLoss, MSELoss, NLLLoss
from .module import IncompatibleKeys, Module, ModuleDict, ModuleList, Sequential
from .normalization import LayerNorm
from .parameter import Parameter
from .positional import PositionalEncoding
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    generate_square_subsequent_mask,
)

__all__ = [
    "functional", "init", "utils",
    "Module", "Sequential", "ModuleList", "ModuleDict", "Parameter", "IncompatibleKeys",
    "Linear", "Embedding", "LayerNorm", "Dropout",
    "Identity", "ReLU", "GELU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
    "CrossEntropyLoss", "NLLLoss", "MSELoss",
    "MultiheadAttention", "KVCache", "DecoderCache",
    "PositionalEncoding", "TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
    "TransformerDecoder", "Transformer", "generate_square_subsequent_mask",
]
