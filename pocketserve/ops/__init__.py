"""The seam between the API process and the workers: every operation a model can run, with
the types of its request and events (`wire.Op`), one module per capability. Light on purpose:
both processes import these, and nothing here loads a library or a model."""
