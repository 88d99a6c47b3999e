"""gancodec's production side: the codec runtime (no torch), the command line and, later, the REST service."""
