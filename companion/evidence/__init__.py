"""Class evidence: attendance from Zoom's events, adult-present confirmations, the "never one
child alone" warning, the class record, signed evidence packs and a family's data (issue 7)."""
