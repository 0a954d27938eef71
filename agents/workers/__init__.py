"""In-process torch workers for image tasks: captioning, generation, upscaling, face embedding.

`pool` (micro-batching workers with idle unload), `sources` (where models come from), `images`
(checked image inputs), `service` (settings to worker), and one module per task.
"""
