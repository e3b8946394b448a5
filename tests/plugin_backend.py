"""A toy deployment backend, registered on import (``plugins=[tests.plugin_backend]``): the eager
model run through a wrapper that counts its calls. It shows that a backend is one module and its
registration: nothing else in segbench names it."""
from bench.backends import Backend, Deployment, eager_run, register_backend

CALLS = []


class Counting(Backend):
    name = "counting"

    def problems(self, precision: str, channels_last: bool) -> list[str]:
        return [] if precision == "fp32" else ["backend=counting runs fp32 only"]

    def prepare(self, model, inputs, spec, device, cache_dir) -> Deployment:
        forward = eager_run(model, inputs, spec, device)

        def run():
            CALLS.append(1)
            return forward()
        return Deployment(run, {"backend_runtime": "counting (tests/plugin_backend.py)"})


register_backend(Counting())
