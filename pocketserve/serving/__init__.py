"""Registry of models, worker processes and the socket between them."""
