"""The application layer: what people and other systems use (the web server; later the command line)."""
