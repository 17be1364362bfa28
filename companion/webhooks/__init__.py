"""Zoom webhook intake: verify, store once, answer fast; the work runs later in a job."""
