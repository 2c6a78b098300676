"""Built-in attnbench backends, registered through the same plugin hook as third-party ones."""
