"""mechshift-lite: circuits of autoregressive vs masked diffusion language models, on a CPU."""

__version__ = "0.1.0"

from .config import ModelConfig
from .graph import Graph
from .model import Hooks, Transformer
from .hf import from_hf, load_pretrained
from . import ablation, accuracy, compare, diffusion, experiment, lens, neurons, tasks, training, zoo
from .tokenizer import Tokenizer
from .inputs import ModelInputs
from .attribution import METHODS, attribute
from .scores import Scores
from .circuits import Circuit, evaluate, faithfulness_curve, greedy, prune, threshold, top_n
from .plots import plot_faithfulness

__all__ = ["ModelConfig", "Graph", "Hooks", "Transformer", "Tokenizer", "from_hf", "load_pretrained", "__version__",
           "METHODS", "ModelInputs", "Scores", "attribute", "Circuit", "evaluate", "faithfulness_curve", "greedy",
           "plot_faithfulness", "prune", "threshold", "top_n"]

from .experiment.report import report  # noqa: E402  (ml.report(...) runs every analysis)
