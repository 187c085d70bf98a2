"""What arrives in the inbox: watching, waiting for a file to be whole, checking it is a PDF,
and claiming it (paced; a file the service cannot move waits alone)."""
