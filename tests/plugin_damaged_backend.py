"""A deliberately damaged deployment, registered on import (``plugins=[tests.plugin_damaged_backend]``):
``run()`` is the eager model (so parity on the random input passes and the row is timed as
eager), but ``predict`` on real images negates the logits, as a broken quantization could. Only
the accuracy gate (bench/measure/accuracy_gate.py) can catch it."""
from bench.backends import Backend, Deployment, eager_predict, eager_run, register_backend


class NegatedOnData(Backend):
    name = "negated_on_data"

    def prepare(self, model, inputs, spec, device, cache_dir) -> Deployment:
        predict = eager_predict(model, spec, device)
        return Deployment(eager_run(model, inputs, spec, device), {"backend_runtime": "negated on data (tests)"},
                          predict=lambda batch: -predict(batch))


register_backend(NegatedOnData())
