"""Courses: weekly classes run as one Zoom meeting each, with the safety settings enforced."""
