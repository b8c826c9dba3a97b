"""The index stage: chunks and their vectors in Weaviate, reached through LlamaIndex."""
