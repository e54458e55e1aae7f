"""The Kafka side of the order pipeline: settings, Avro codec, consumer bridge, producer, registry, CLI."""
