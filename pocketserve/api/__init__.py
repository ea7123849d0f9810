"""HTTP layer: OpenAI wire schemas, thin routes, error envelope, SSE."""
