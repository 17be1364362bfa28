"""Encrypted backups of the database: `companion backup create|verify|restore` (README).

Archive layout: archive.py; what it holds: content.py; the tables and their kinds: tables.py.
"""
