"""One temperature T for the class logits (Guo et al. 2017, "On calibration of modern neural
networks"): the exported class logits become logits / T. T is fitted on val by the 3-class
log-loss. A positive T changes no image's argmax, so F1 and accuracy stay as they were. The order
of P(malignant) across images can move a little (with three classes it depends on the other two
logits too), so AUC can; it did not for 1.6.1 (val 0.939 both). The probabilities the report shows
move (T > 1: less confident), and with them what the P(normal) bound drops, so the export chooses
that bound after this.
"""
import numpy as np
import torch

GRID = tuple(round(0.5 + 0.05 * k, 2) for k in range(51))  # 0.5 ... 3.0


def log_loss(log_probs, labels, t):
    """Mean negative log-likelihood of labels under softmax(log_probs / t); log_probs N x C."""
    z = np.asarray(log_probs, dtype=np.float64) / t
    z = z - z.max(1, keepdims=True)
    z = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-z[np.arange(len(labels)), np.asarray(labels)].mean())


def tempered(probs, t):
    """softmax(log(probs) / t): the probabilities a Tempered net gives, from its inner net's."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1)) / t
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def fit_temperature(log_probs, labels, grid=GRID):
    """The grid's T with the lowest log-loss (the smaller T on a tie); log-probabilities or logits alike."""
    return min(grid, key=lambda t: (log_loss(log_probs, labels, t), t))


class Tempered(torch.nn.Module):
    def __init__(self, net, t):
        super().__init__()
        self.net, self.t = net, float(t)

    def forward(self, x):
        m, c = self.net(x)
        return m, c / self.t
