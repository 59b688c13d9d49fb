#!/usr/bin/env bash
# setup.sh: ship the committed code to every worker and make its venv (jaxcnn[tpu], Python 3.12).
#
# `git archive GIT_REF` (committed files only: a dirty tree gets a warning, never shipped), copied
# with worker_setup.sh from the same commit into every worker's home by one `tpu-vm scp
# --worker=all`, then `bash worker_setup.sh` on all workers at once (see its --help).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="setup.sh: ship GIT_REF (git archive) to every worker and install jaxcnn[tpu] in a uv venv.

  ZONE=us-east5-b TPU_NAME=my-v6e bash tpu_scripts/setup.sh"
uses=(GCLOUD PROJECT ZONE TPU_NAME INTERNAL_IP STRICT_HOST_KEY_CHECKING PYTHON_VERSION GIT_REF DRY_RUN)
no_args "$@"
init
check_ref
check_gcloud
setup_workers
