"""Choose MuJoCo's headless OpenGL backend before dm_control is imported.

dm_control reads `MUJOCO_GL` once, at import. A user's setting is respected. Otherwise EGL (GPU
drivers, or Mesa's software device) and then OSMesa are tried, each in a subprocess that imports
dm_control and renders one tiny frame, because a failing backend can abort the process or poison
dm_control's import state. The choice is stored in `os.environ`, so it is made once per process
tree: child processes (run workers) inherit it. On a GPU run, EGL renders on the device that
`MUJOCO_EGL_DEVICE_ID` names (the scheduler sets it; the probe inherits it).
"""

from __future__ import annotations

import os
import subprocess
import sys

from blast_core.errors import BlastError

BACKENDS = ("egl", "osmesa")
DEBIAN_PACKAGES = {
    "egl": "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0",
    "osmesa": "libosmesa6",
}
_PROBE = (
    "from dm_control.mujoco import Physics\n"
    "p = Physics.from_xml_string('<mujoco/>')\n"
    "assert p.render(8, 8).shape == (8, 8, 3)\n"
    "p.free()\n"
)


def probe(backend: str, timeout: float = 60.0) -> bool:
    """Whether dm_control can render with `MUJOCO_GL=backend` here (about 0.5 s)."""
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)  # dm_control sets it to match the backend
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def install_hint() -> str:
    pkgs = " ".join(DEBIAN_PACKAGES[b] for b in BACKENDS)
    return f"install the Debian packages {pkgs} (scripts/setup.sh does)"


def ensure_gl(backends: tuple[str, ...] = BACKENDS) -> str:
    """Set `MUJOCO_GL` if the user has not, and return it; a one-line BlastError if none of
    `backends` works."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    for backend in backends:
        if probe(backend):
            os.environ["MUJOCO_GL"] = backend
            return backend
    raise BlastError(
        "no headless OpenGL for MuJoCo rendering: "
        f"{' and '.join(f'MUJOCO_GL={b}' for b in backends)} failed; {install_hint()}"
    )
