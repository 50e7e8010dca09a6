"""Where the CDK app finds its assets, whatever the working directory."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"
LAYERS_DIR = ROOT / "layers"
CDK_JSON = ROOT / "cdk.json"

# Shipped to Lambda: functions/ minus local mode, the console scripts and build litter.
FUNCTION_EXCLUDES = [
    "batchgate/local",
    "batchgate/local/**",
    "batchgate/cli.py",
    "batchgate/keys_cli.py",
    "**/__pycache__",
    "**/*.pyc",
    "*.egg-info",
]
