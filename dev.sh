#!/usr/bin/env bash
# The project's two commands (see README):  ./dev.sh demo   — set up, then check, build and draw specs/
#                                           ./dev.sh test   — set up, then type-check (mypy) and run the whole test suite
# Set-up is idempotent: a project-local .venv with the pinned torch build, the package in editable mode,
# graphviz's `dot` binary and headless chromium with its driver (Debian packages) when they are missing.
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python

setup() {
  if ! command -v dot >/dev/null 2>&1; then
    echo "[setup] installing graphviz (dot)" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq graphviz >/dev/null
  fi
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "[setup] installing chromium and chromium-driver (the HTML view's browser test)" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  if [ ! -x "$PY" ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "[setup] creating .venv (torch 2.14.1, torchvision 0.29.1, rkcompile[dev,bench])" >&2
    python3 -m venv .venv
    "$PY" -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
    "$PY" -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
    touch .venv/.installed
  fi
}

case "${1:-}" in
  demo)
    setup
    mkdir -p out
    .venv/bin/rkcompile check specs/*.yaml
    .venv/bin/rkcompile tableaux
    .venv/bin/rkcompile build specs/ho-resnet58-rk4.yaml -o out/ho-resnet58-rk4.pt --code out/ho-resnet58-rk4.py
    .venv/bin/rkcompile draw specs/ho-resnet58-rk4.yaml -o out/ho-resnet58-rk4.svg
    .venv/bin/rkcompile draw out/ho-resnet58-rk4.pt -o out/ho-resnet58-rk4-blocks.svg --level block
    ;;
  test)
    setup
    shift
    "$PY" -m mypy  # the static type check ([tool.mypy] in pyproject.toml); set -e stops the run on errors
    "$PY" -m pytest -n 2 -q "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
