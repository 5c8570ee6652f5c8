"""The HTTP layer: blueprints, routes and their views."""
