"""Language-model generation: loading causal LMs, the batching engine behind the Qwen runner, tiny test models."""
