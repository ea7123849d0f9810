"""Live speech over WebSockets: `/ws/stt` (audio in, partial and final transcripts out) and
`/ws/tts` (text in, audio out sentence by sentence). Plain asyncio over a small transport, so
the sessions are tested without a server; the routes in `api/routes/live.py` are thin."""
