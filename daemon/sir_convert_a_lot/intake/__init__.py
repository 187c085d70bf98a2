"""What arrives in the inbox: watching, waiting for a file to be whole, and claiming it (paced;
a file the service cannot move waits alone). The checks a claimed file passes are the jobs'
(``jobs.source_checks``)."""
