"""The host master: links, sessions, the scheduler, the journal and the user API."""

from microswarm.master.master import JobFailedError, JobHandle, Master
from microswarm.master.scheduler import NodeCaps, Scheduler

__all__ = ["JobFailedError", "JobHandle", "Master", "NodeCaps", "Scheduler"]
