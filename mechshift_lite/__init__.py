"""mechshift-lite: circuits of autoregressive vs masked diffusion language models, on a CPU."""

__version__ = "0.1.0"

from .config import ModelConfig
from .graph import Graph
from .model import Hooks, Transformer
from .hf import from_hf, load_pretrained
from .tokenizer import Tokenizer

__all__ = ["ModelConfig", "Graph", "Hooks", "Transformer", "Tokenizer", "from_hf", "load_pretrained", "__version__"]
