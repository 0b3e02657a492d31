"""The ε-MSE training loop: the loss falls, label dropout feeds the null label, EMA averages."""
import torch
from torch import nn

from core import load_model
from core.cli import main
from core.data import load_dataset
from core.models import build_network
from core.schedule import Schedule
from core.training.diffusion import EMA, TrainSettings, diffusion_loss, train_diffusion


def test_training_lowers_the_loss_on_the_mixture():
    x, labels, _ = load_dataset("gmm", num=4000, seed=0)
    model = build_network("mlp", {"data_dim": 2, "width": 32, "depth": 2, "num_classes": 8})
    alphas = torch.tensor(Schedule.from_name("linear", 1000).alphas_cumprod, dtype=torch.float32)

    def loss_of(net):
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return diffusion_loss(net, x[:2000], labels[:2000], alphas, g, 8, 0.0).item()

    before = loss_of(model)
    ema = train_diffusion(model, x, labels, Schedule.from_name("linear", 1000),
                          TrainSettings(steps=300, batch_size=256, lr=2e-3, log_every=1000), null_label=8,
                          log=lambda _: None)
    assert loss_of(ema) < 0.8 * before
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())


class _LabelSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.labels = []

    def forward(self, x, t, y=None):
        self.labels.append(y.clone())
        return self.lin(x)


def test_label_dropout_replaces_labels_by_the_null_label():
    spy = _LabelSpy()
    alphas = torch.linspace(0.99, 0.01, 100)
    g = torch.Generator().manual_seed(0)
    diffusion_loss(spy, torch.zeros(10_000, 2), torch.full((10_000,), 3), alphas, g, null_label=8, label_dropout=0.2)
    share = (spy.labels[0] == 8).double().mean().item()
    assert set(spy.labels[0].tolist()) == {3, 8} and abs(share - 0.2) < 0.02


def test_ema_moves_towards_the_weights():
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for step in range(1000):
        ema.update(net, step)
    assert abs(ema.module.weight.item() - 1.0) < 1e-6
    ema2 = EMA(nn.Linear(1, 1, bias=False).requires_grad_(False), decay=0.9)
    ema2.module.weight.zero_()
    ema2.update(net, step=10_000)  # past warm-up: one step moves 1 − 0.9 of the way
    assert abs(ema2.module.weight.item() - 0.1) < 1e-6


def test_train_command_writes_a_loadable_bundle(tmp_path):
    out = tmp_path / "mini.safetensors"
    assert main(["train", "diffusion", "--data", "scurve", "--num-data", "500", "--arch", "mlp",
                 "--network", '{"width": 16, "depth": 1}', "--steps", "5", "--batch", "32",
                 "--name", "mini", "--out", str(out)]) == 0
    bundle = load_model(out, "cpu")
    assert bundle.name == "mini" and bundle.config.num_classes == 4 and bundle.config.null_label
    assert main(["train", "diffusion", "--data", "scurve", "--network", "[1]", "--name", "x",
                 "--out", str(out)]) == 2
