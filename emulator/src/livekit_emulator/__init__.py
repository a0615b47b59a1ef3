"""A LiveKit server emulator for agentline's development and tests.

Never a production path: deployments point at a real LiveKit server or LiveKit Cloud.
See docs/emulator.md.
"""

from .admin_client import EmulatorAdmin
from .config import DEFAULT_API_KEY, DEFAULT_API_SECRET, EmulatorConfig, SimulatedWorkerSpec
from .server import Emulator
from .testing import RunningEmulator, running_emulator

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "Emulator",
    "EmulatorAdmin",
    "EmulatorConfig",
    "RunningEmulator",
    "SimulatedWorkerSpec",
    "running_emulator",
]
