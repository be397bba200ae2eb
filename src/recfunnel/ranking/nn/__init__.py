"""torch building blocks of the neural rankers, composed plainly as in torchrec's ``dlrm.py``.

``SparseArch`` embeds hashed categorical columns (``B x Fs`` ids -> ``B x Fs x D``),
``DenseArch`` normalises dense columns (``B x Fd``), ``MLP`` is the deep tower, ``WideArch`` the
linear model over hashed crosses, ``CrossNet`` the DCN-v2 cross layers and ``OverArch`` the
final logit. ``NeuralRanker`` holds the training loop the neural rankers share.

Importing this package imports torch.
"""

from recfunnel.ranking.nn.cross import CrossLayer, CrossNet
from recfunnel.ranking.nn.embedding import DenseArch, SparseArch
from recfunnel.ranking.nn.mlp import MLP, OverArch
from recfunnel.ranking.nn.wide import WideArch

__all__ = ["MLP", "CrossLayer", "CrossNet", "DenseArch", "OverArch", "SparseArch", "WideArch"]
