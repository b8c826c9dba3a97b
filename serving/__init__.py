"""BentoML services: the RAG API and the Qwen runner."""
