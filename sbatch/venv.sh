# Sourced by sbatch/run.sh and tests/run.sh: create .venv and install the project into it, once.
# torch comes first and on its own: with no torch present, transformers would pull a multi-GB CUDA build
# (on a GPU cluster, the same line installs the CUDA build that matches the pin).
MOLGEN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOLGEN_VENV="${MOLGEN_VENV:-$MOLGEN_ROOT/.venv}"
MOLGEN_TORCH="${MOLGEN_TORCH:-torch==2.13.0}"

ensure_venv() {
  local stamp="$MOLGEN_VENV/.installed" want
  want="$(sha256sum <"$MOLGEN_ROOT/pyproject.toml" | cut -c1-16) $MOLGEN_TORCH"
  if [ -x "$MOLGEN_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  local log="$MOLGEN_VENV.install.log"
  echo "molgen-grid: setting up $MOLGEN_VENV (first use; a few minutes; log: $log)" >&2
  {
    python3 -m venv "$MOLGEN_VENV" &&
    "$MOLGEN_VENV/bin/python" -m pip install --upgrade pip &&
    "$MOLGEN_VENV/bin/python" -m pip install "$MOLGEN_TORCH" &&
    "$MOLGEN_VENV/bin/python" -m pip install -e "$MOLGEN_ROOT[test]"
  } >"$log" 2>&1 || { echo "molgen-grid: installing into $MOLGEN_VENV failed; see $log" >&2; tail -n 20 "$log" >&2; return 1; }
  echo "$want" >"$stamp"
  echo "molgen-grid: $MOLGEN_VENV is ready" >&2
}
