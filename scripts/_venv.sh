# Sourced by the scripts: make .venv and keep it installed.
# JOBHOOK_EXTRAS says what to install beside jobhook: "" (serving: scripts/serve, scripts/jobhook)
# or "dev,postgres" (scripts/test, scripts/bench). A stamp per set remembers pyproject.toml's hash,
# so an edit to it reinstalls; the dev set includes what serving needs.
set -euo pipefail
PYTHON=${PYTHON:-python3}
JOBHOOK_EXTRAS=${JOBHOOK_EXTRAS:-}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
stamp=.venv/.jobhook-installed${JOBHOOK_EXTRAS:+-$JOBHOOK_EXTRAS}
dev_stamp=.venv/.jobhook-installed-dev,postgres
installed() { [ -f "$1" ] && [ "$(cat "$1")" = "$want" ]; }
if ! installed "$stamp" && ! installed "$dev_stamp"; then
    target=.
    [ -n "$JOBHOOK_EXTRAS" ] && target=".[$JOBHOOK_EXTRAS]"
    echo "scripts: installing jobhook${JOBHOOK_EXTRAS:+ with $JOBHOOK_EXTRAS} into .venv ..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip >&2 || true
    .venv/bin/python -m pip install --quiet -e "$target" >&2
    echo "$want" > "$stamp"
fi
