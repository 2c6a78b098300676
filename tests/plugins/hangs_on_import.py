"""A broken test plugin: importing it never finishes, and the registry must report it and go on."""

import time

time.sleep(3600)
