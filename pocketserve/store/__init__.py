"""Things the server keeps between requests and restarts (stored responses), below the API."""
