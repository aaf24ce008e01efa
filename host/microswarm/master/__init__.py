"""The host master: links, sessions, the scheduler, the journal and the user API."""

from microswarm.master.cluster import Cluster, RunningCluster
from microswarm.master.config import ClusterFileError, ClusterSpec
from microswarm.master.journal import JournalKeyError
from microswarm.master.master import JobFailedError, JobHandle, Master
from microswarm.master.operands import Shared
from microswarm.master.scheduler import NodeCaps, Scheduler
from microswarm.master.split import BlockMatmul, Tiles2D

__all__ = [
    "BlockMatmul", "Cluster", "ClusterFileError", "ClusterSpec", "JobFailedError", "JobHandle",
    "JournalKeyError", "Master", "NodeCaps", "RunningCluster", "Scheduler", "Shared", "Tiles2D",
]
