"""What people asked and what they thought of the answers: the query log, feedback and its review."""
