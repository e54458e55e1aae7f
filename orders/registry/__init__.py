"""`orders registry`: a dev schema registry speaking the Confluent REST API subset the clients use."""
