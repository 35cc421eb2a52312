"""The connector of SpeechBrain's LibriSpeech ``train_speechllm.py``.

Concatenates every 5 consecutive encoder frames (50 Hz -> 10 Hz) and
projects them with a 2-layer MLP to the LLM width, as that recipe does with
``ConcatDownsampler`` and ``VanillaNN``. For the benchmark it takes the
QPMapper's arguments and returns ``n_queries`` vectors (the prompt reserves
that many slots): set ``n_queries`` to the clips' mean 10 Hz length so that
the LLM sees as many audio tokens as with variable-length sequences.
"""

import torch
from speechbrain.lobes.downsampling import ConcatDownsampler
from speechbrain.lobes.models.VanillaNN import VanillaNN


class ConcatConnector(torch.nn.Module):
    """Concatenation downsampler + MLP, with a fixed number of outputs."""

    def __init__(
        self,
        input_size,
        output_size,
        n_queries,
        factor=5,
        **unused_qpmapper_options,
    ):
        super().__init__()
        self.n_queries = n_queries
        self.downsample = ConcatDownsampler(factor)
        self.project = VanillaNN(
            input_shape=[None, None, input_size * factor],
            dnn_blocks=2,
            dnn_neurons=output_size,
        )

    def forward(self, x, lengths=None, token_posterior=None):
        # The QPMapper's signature (the Brain passes all three); this
        # connector has no utterance token to carry a posterior.
        if token_posterior is not None:
            raise ValueError("ConcatConnector has no utterance token")
        tokens = self.project(self.downsample(x))
        missing = self.n_queries - tokens.shape[1]
        if missing > 0:
            tokens = torch.nn.functional.pad(tokens, (0, 0, 0, missing))
        return tokens[:, : self.n_queries]
