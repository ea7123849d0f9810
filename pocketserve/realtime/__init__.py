"""OpenAI's Realtime API (`/v1/realtime`): a voice or text conversation over one WebSocket.

A session is a conversation object in the API process that calls transcription (`LISTEN`),
chat (`CHAT`) and speech (`SPEECH`) through the registry, each model in its own worker with
its own admission and cancel. Nothing here imports the web framework: the route hands the
session a `Transport` (receive a message, send one, close), so the session is driven the same
way by a WebSocket or a test.
"""
