"""`orders dashboard` (the live web page) and `orders top` (the terminal view)."""
