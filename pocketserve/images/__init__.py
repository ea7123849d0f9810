"""Images at the edge: sniffed and size-checked from their bytes, fetched only through the guard.

Workers receive checked bytes (`ops.chat.ImagePart`), never URLs. Nothing here imports FastAPI.
"""
