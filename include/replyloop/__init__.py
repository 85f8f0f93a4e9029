"""replyloop: continuous fine-tuning of a customer-service reply assistant.

The data flows one way: ingest -> validate -> train -> evaluate -> register/promote -> serve -> feedback.
Nothing in this package imports Airflow or FastAPI at module level except `replyloop.serving`.
"""

__version__ = "0.1.0"
