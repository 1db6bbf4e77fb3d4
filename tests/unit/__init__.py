"""Unit tests of the pure translation layer (request, response, stream, upstream errors)."""
