"""Language-model generation: loading causal LMs and the batching engine behind the Qwen runner."""
