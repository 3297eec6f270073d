#!/usr/bin/env bash
# Regenerates the reference fixtures (make fixtures): creates the pinned tools
# venv .tools-venv from tools/requirements.txt if needed, then builds the tiny
# random models under testdata/models/ and the SmolLM2 GGUF references under
# testdata/smollm2/. Arguments are passed to tools/make_fixtures.py (family
# names); set SKIP_GGUF=1 to skip the SmolLM2 references.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.tools-venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "make_fixtures: creating $VENV"
  python3 -m venv "$VENV"
fi
if ! cmp -s tools/requirements.txt "$VENV/.requirements-installed"; then
  echo "make_fixtures: installing tools/requirements.txt into $VENV (torch is large)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tools/requirements.txt
  cp tools/requirements.txt "$VENV/.requirements-installed"
fi

# Keep CPU use modest and stay offline: everything is generated locally.
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

"$VENV/bin/python" tools/make_fixtures.py "$@"
"$VENV/bin/python" tools/make_bf16_fixtures.py
if [ "${SKIP_GGUF:-0}" != 1 ]; then
  if [ ! -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    echo "make_fixtures: models/SmolLM2-135M-Instruct.Q4_1.gguf is missing; run 'make setup'" >&2
    exit 1
  fi
  "$VENV/bin/python" tools/make_gguf_reference.py
  "$VENV/bin/python" tools/make_gguf_tokenizer_reference.py
fi
"$VENV/bin/python" tools/make_gguf_fixtures.py
