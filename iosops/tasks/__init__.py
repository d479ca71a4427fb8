"""invoke task modules, one per domain. Tasks are thin: parse flags, load env, call iosops, render."""
