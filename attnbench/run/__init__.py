"""A run: the plan, the sweep over workers, one case's execution, resume, lock, observers."""
