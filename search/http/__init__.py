"""The HTTP front end: the FastAPI app, its models, routes, jobs, uploads, limits and the web page."""
