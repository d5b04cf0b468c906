"""The ensemble's disagreement as a third output of the exported graph (rules 29 and 30, model/EXPERIMENTS.md).

class_spread = the standard deviation (over the networks, population form) of each network's
P(malignant), its class logits divided by the model's class temperature as the graph divides their
average. It reads the networks' class logits that Ensemble.forward keeps from the same pass, so the
graph runs each network once. model.json's outputs.spread names the output and the cut above which
the gateway reports that the networks disagree.

With most_suspicious_above (rule 30), where the spread is above that cut the class logits become
those of the network with the highest P(malignant) (over the temperature); elsewhere they stay the
average's. The masks are never touched.
"""
import torch

MALIGNANT = 2


class ClassSpread(torch.nn.Module):
    def __init__(self, net, ensemble, t, most_suspicious_above=None):
        super().__init__()
        self.net, self.ensemble, self.t = net, ensemble, float(t)
        self.most_suspicious_above = most_suspicious_above

    def forward(self, x):
        m, c = self.net(x)
        logits = torch.stack([z / self.t for z in self.ensemble.last_class_logits], 1)  # N x networks x classes
        each = torch.softmax(logits, 2)[:, :, MALIGNANT]
        mean = each.mean(1, keepdim=True)
        spread = torch.sqrt(((each - mean) ** 2).mean(1))
        if self.most_suspicious_above is not None:
            most = each.argmax(1)  # N
            chosen = torch.gather(logits, 1, most[:, None, None].expand(-1, 1, logits.shape[2]))[:, 0]
            c = torch.where((spread > self.most_suspicious_above)[:, None], chosen, c)
        return m, c, spread


class FirstTwo(torch.nn.Module):
    """The mask and class logits of a graph with more outputs, for the scorers that take two."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:2]
