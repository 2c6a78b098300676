"""A broken test plugin: importing it raises, and the registry must report it and go on."""

raise RuntimeError("this plugin is broken on purpose")
