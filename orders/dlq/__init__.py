"""`orders dlq list` and `orders dlq replay`: reading and re-publishing dead letters."""
