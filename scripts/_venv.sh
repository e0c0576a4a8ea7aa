# Sourced by scripts/serve, scripts/test and scripts/bench: make .venv and keep it installed.
# Reinstalls when pyproject.toml changes (a stamp file remembers its hash).
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.jobhook-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "scripts: installing jobhook and its dev tools into .venv ..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip >&2 || true
    .venv/bin/python -m pip install --quiet -e ".[dev,postgres]" >&2
    echo "$want" > "$stamp"
fi
