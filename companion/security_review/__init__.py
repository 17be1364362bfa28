"""The admin's security review: what needs attention, and a record of each review held."""
