"""Where the CDK app finds its assets, whatever the working directory."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"
LAYERS_DIR = ROOT / "layers"
CDK_JSON = ROOT / "cdk.json"

# Shipped to Lambda: all of functions/ (local mode and the console scripts live in tools/), minus
# build litter.
FUNCTION_EXCLUDES = [
    "**/__pycache__",
    "**/*.pyc",
    "*.egg-info",
]
