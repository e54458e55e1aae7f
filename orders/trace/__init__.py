"""`orders trace ORDER_ID`: an order's traces, read back from the trace backend, as a timeline."""
