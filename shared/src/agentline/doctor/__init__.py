"""`agentline doctor`: the checklist a team writes by hand when its agent never joins."""

from agentline.doctor.checks import Check
from agentline.doctor.runner import DoctorOptions, run_doctor

__all__ = ["Check", "DoctorOptions", "run_doctor"]
