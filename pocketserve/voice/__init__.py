"""Voice pipelines in the API process: a spoken reply (chat written and spoken at once), and
the dialogue sessions of /v1/dialogue. No FastAPI here; routes stay thin."""
