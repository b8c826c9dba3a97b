"""The QA dataset: rule-based and self-instruct pairs traceable to indexed chunks, validated, split and versioned."""
