"""`colcon build` of a copy of the checkout into a temporary workspace (build and launch tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def colcon_executable() -> str | None:
    """The venv's colcon (beside this interpreter), else the one on PATH, else None."""
    colcon = Path(sys.executable).with_name("colcon")
    return str(colcon) if colcon.exists() else shutil.which("colcon")


def colcon_build_copy(colcon: str, work: Path, timeout: float = 600) -> Path:
    """Copy the tracked (and untracked, not ignored) files to ``work/src`` and build; returns ``work``.

    Building a copy never touches the checkout's own build outputs. Fails the test with colcon's
    output when the build fails.
    """
    src = work / "src" / "tnn_ros"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    command = [
        colcon,
        "--log-base",
        str(work / "log"),
        "build",
        "--base-paths",
        str(work / "src"),
        "--build-base",
        str(work / "build"),
        "--install-base",
        str(work / "install"),
        "--event-handlers",
        "console_direct-",
    ]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout}\n{result.stderr}"
    return work
