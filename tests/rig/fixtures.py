"""pytest fixtures for the real components (SeaweedFS, litestream). Filled in by the rig."""
