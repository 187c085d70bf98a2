"""How the supervisor reaches a worker: ``base.Transport`` is the interface, ``local`` the
spawned process and pipe that runs on this host today."""
