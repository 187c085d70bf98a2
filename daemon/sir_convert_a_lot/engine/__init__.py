"""Where conversion runs. ``interface`` is what the jobs may ask; ``supervisor`` keeps one worker
within its limits over a ``transports`` channel (``local``: a spawned process and a pipe);
``startup`` brings a worker up; ``worker`` is the worker itself; ``protocol`` the messages
between them; ``policy`` and ``gpu`` decide where a job may run and hold the GPU lock."""
