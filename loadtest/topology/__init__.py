"""The production topology on one machine, for long chaos runs and capacity tests.

``python -m loadtest.topology up`` starts it (see ``__main__``); the chaos suite
(``tests/chaos/test_topology_*.py``) builds the same :class:`Topology`, smaller in its CI
versions, and kills or pauses its processes.
"""

from loadtest.topology.processes import RoleProcess, pause, resume, settings_env
from loadtest.topology.topology import Topology, TopologySpec

__all__ = ["RoleProcess", "Topology", "TopologySpec", "pause", "resume",
           "settings_env"]
