"""API: the FastAPI application, one module per resource."""
