"""Board definitions (JSON), shipped inside the host package as microswarm.boards."""
