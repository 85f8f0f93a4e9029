"""HTTP API for the social platform: replies from the champion, feedback into the lake."""
