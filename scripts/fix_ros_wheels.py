"""Make the ROS 2 PyPI wheels usable for building our interfaces with colcon.

The wheels' exported CMake files carry the wheel build machine's absolute paths to the Python
headers (``/opt/python/cp311-cp311/include/python3.11``) and to NumPy's headers; CMake then
fails with 'Imported target ... includes non-existent path'. This rewrites those paths to
this interpreter's, in place and idempotently (a second run changes nothing), and must run
after every fresh install of the wheels (``make setup`` does).

    python scripts/fix_ros_wheels.py [PREFIX]     # PREFIX defaults to sys.prefix (the venv)
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

# Python include dirs of manylinux build images and NumPy include dirs of any machine.
PY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+[^/\s\";]*/include/python3\.\d+")
NP_INCLUDE = re.compile(r"(?<![\w.-])/[^\s\";]*?/numpy/(?:_core|core)/include")


def fix_text(text: str, py_include: str, np_include: str) -> str:
    """Return ``text`` with foreign header paths replaced by this machine's."""
    text = PY_INCLUDE.sub(py_include, text)
    return NP_INCLUDE.sub(lambda m: np_include if m.group(0) != np_include else m.group(0),
                          text)


def fix_prefix(prefix: Path) -> list[Path]:
    """Fix every ``*.cmake`` under ``prefix/share``; return the files that changed."""
    import numpy

    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = []
    for path in sorted((prefix / "share").rglob("*.cmake")):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        new = fix_text(text, py_include, np_include)
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prefix = Path(argv[0]) if argv else Path(sys.prefix)
    if not (prefix / "share").is_dir():
        print(f"fix_ros_wheels: no share/ under {prefix}: are the ROS wheels installed?",
              file=sys.stderr)
        return 1
    changed = fix_prefix(prefix)
    print(f"fix_ros_wheels: {len(changed)} CMake file(s) fixed under {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
