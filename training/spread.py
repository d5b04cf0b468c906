"""The ensemble's disagreement as a third output of the exported graph (rule 29, model card).

class_spread = the standard deviation (over the networks, population form) of each network's
P(malignant), its class logits divided by the model's class temperature as the graph divides their
average. It reads the networks' class logits that Ensemble.forward keeps from the same pass, so the
graph runs each network once. model.json's outputs.spread names the output and the cut above which
the gateway reports that the networks disagree.
"""
import torch

MALIGNANT = 2


class ClassSpread(torch.nn.Module):
    def __init__(self, net, ensemble, t):
        super().__init__()
        self.net, self.ensemble, self.t = net, ensemble, float(t)

    def forward(self, x):
        m, c = self.net(x)
        each = torch.stack([torch.softmax(z / self.t, 1)[:, MALIGNANT] for z in self.ensemble.last_class_logits], 1)
        mean = each.mean(1, keepdim=True)
        return m, c, torch.sqrt(((each - mean) ** 2).mean(1))
