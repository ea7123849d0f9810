"""Serving on Ray Serve (`pocketserve serve --ray`): each model a Ray Serve deployment whose
replicas each run the model's worker process, and this server's HTTP app in front of them.

Nothing here imports Ray at import time; Ray is the optional `ray` extra.
"""
