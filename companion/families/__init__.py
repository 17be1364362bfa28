"""Families: enrolment, personal family links, the e-safety agreement, audio-only requests."""
