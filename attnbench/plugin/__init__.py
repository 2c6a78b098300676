"""Where a backend plugs in: the hooks, the registry, the Backend API, validation, guarded calls."""
