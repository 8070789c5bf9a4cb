"""``rlcar serve``: a local web app over the same core as the CLI (runs, charts, live driving, races,
dreams, training, videos). Built on Starlette + uvicorn; see ``app.create_app``."""
