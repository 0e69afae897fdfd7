"""`charlstm serve`: the model behind an HTTP server that batches its clients.

`app` (the Starlette application and its routes), `batcher` (continuous
batching: requests join the compiled sampler call at chunk boundaries),
`jobs` (a request's rows, and the handing out of their characters),
`device_batch` (the batch's rows on the device), `requests` (what a request
may ask, checked field by field) and `server` (uvicorn, stopping gently on
SIGTERM). Only this package imports starlette and uvicorn (the serve extra),
and the API imports it only when a server is asked for.
"""
