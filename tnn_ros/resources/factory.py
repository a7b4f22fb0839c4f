"""Backend selection: ``make_backend(name, **params) -> (backend, why)``."""

from __future__ import annotations

from typing import Any, Callable

from tnn_ros.resources.base import BackendError, ResourceBackend
from tnn_ros.resources.mission import Mission
from tnn_ros.resources.sim import MISSION_START_IMMEDIATE, SimBackend, SimParams

BACKENDS = ("auto", "jtop", "psutil", "sim", "trace")


def make_backend(
    name: str,
    *,
    sim: SimParams | dict | None = None,
    mission: Mission | None = None,
    mission_start: str = MISSION_START_IMMEDIATE,
    trace_file: str = "",
    trace_loop: bool = True,
    jtop_socket: str | None = None,
    jtop_factory: Callable[[], Any] | None = None,
    psutil_module: Any = None,
) -> tuple[ResourceBackend, str]:
    """Create the backend called ``name`` and say why it is the one in use.

    ``auto`` tries jtop (package importable and its service socket present), then psutil, then sim.
    An explicitly named backend that cannot start raises BackendError / ValueError with the reason.
    ``sim`` takes :class:`SimParams` (or a dict of them), an optional mission and when its clock
    starts (``mission_start``: ``immediate`` | ``first_frame``, see :mod:`tnn_ros.resources.sim`);
    ``trace`` needs ``trace_file``. The other arguments let tests substitute fakes.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}, expected one of {', '.join(BACKENDS)}")
    if isinstance(sim, dict):
        sim = SimParams.from_mapping(sim)
    if name == "sim":
        why = "sim requested" + (f" with mission {mission.name}" if mission else "")
        return SimBackend(sim, mission=mission, mission_start=mission_start), why
    if name == "trace":
        if not trace_file:
            raise ValueError("backend 'trace' needs trace_file")
        from tnn_ros.resources.trace import TraceBackend

        return TraceBackend(trace_file, loop=trace_loop), f"trace requested: {trace_file}"
    if name == "jtop":
        from tnn_ros.resources.jtop_backend import JtopBackend

        return JtopBackend(jtop_factory), "jtop requested"
    if name == "psutil":
        from tnn_ros.resources.psutil_backend import PsutilBackend

        return PsutilBackend(psutil_module), "psutil requested"

    # auto: the richest source that works here
    from tnn_ros.resources.jtop_backend import JTOP_SOCKET, JtopBackend, jtop_available

    reasons = []
    if jtop_factory is not None:
        available, why = True, "jtop client given"
    else:
        available, why = jtop_available(jtop_socket or JTOP_SOCKET)
    if available:
        try:
            return JtopBackend(jtop_factory), f"auto: {why}"
        except BackendError as error:
            why = str(error)
    reasons.append(f"jtop: {why}")
    try:
        from tnn_ros.resources.psutil_backend import PsutilBackend

        return PsutilBackend(psutil_module), "auto: " + "; ".join(reasons + ["psutil available"])
    except Exception as error:  # ImportError, or psutil failing on an exotic platform
        reasons.append(f"psutil: {error}")
    return SimBackend(sim, mission=mission, mission_start=mission_start), "auto: " + "; ".join(
        reasons + ["falling back to sim"]
    )
