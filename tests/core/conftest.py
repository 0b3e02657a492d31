import pytest
import torch

from core import load_model


@pytest.fixture(scope="session")
def gmm():
    """The analytic toy-gmm bundle on CPU."""
    return load_model("toy-gmm", "cpu")


def nearest_component(bundle, x: torch.Tensor) -> torch.Tensor:
    """The mixture component each clean point most likely came from."""
    t0 = torch.zeros(len(x), dtype=torch.long)
    return bundle.classifier.mixture.log_posterior(x, t0).argmax(1)
