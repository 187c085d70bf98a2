"""Where conversion runs: the supervisor, its worker process, the GPU lock."""
