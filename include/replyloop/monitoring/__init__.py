"""Production monitoring of the served assistant: traffic, feedback, latency, fallbacks and drift."""
