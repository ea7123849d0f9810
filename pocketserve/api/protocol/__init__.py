"""Pydantic request/response models, one module per API family."""
