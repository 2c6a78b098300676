"""Performance history: runs stored in a database, change points found per series."""
