"""iosops: the ops library behind the `inv` tasks. Importable without invoke."""
from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
