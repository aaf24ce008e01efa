"""What the test areas share; tests/ is on pytest's pythonpath (pyproject.toml)."""
