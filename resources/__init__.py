"""Files the app ships: built-in models (models/), icons and style sheets."""
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
MODELS = RESOURCES / "models"
