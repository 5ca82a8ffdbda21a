#!/usr/bin/env bash
# Creates (or refreshes when requirements.txt changes) the example's virtualenv, outside the
# repository: ${AMBER_FLASK_VENV:-$HOME/.cache/amber-flask-venv}. Prints its path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${AMBER_FLASK_VENV:-$HOME/.cache/amber-flask-venv}"
stamp="$venv/.requirements"
# One maker at a time: tests calling this at once on a fresh machine raced in `python3 -m venv`
# ("File exists"). The others wait here, then find it made.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/opentelemetry-instrument" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$stamp"
fi
echo "$venv"
