# Sourced by the scripts: make sure ./.venv exists and holds the project, its test tools and
# Meltano. Re-installs only when pyproject.toml changed since the last install.
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.target-miso-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]' 'meltano==4.4.1'
  touch "$stamp"
fi
